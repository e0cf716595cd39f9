"Video I/O, the embedded dataset and dataset classes (lessons 01-03)."
from .video import VideoError, VideoInfo, iter_frames, probe_video, read_video, write_video
