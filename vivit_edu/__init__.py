"""vivit_edu: learn video classification with attention (ViViT, Non-local networks), then use the same code.

`import vivit_edu as ve` gives the entry points users start from, among them the function behind each command of
`vivit-edu` (lesson 14): `run_experiments` (`demo`, `experiment`), `train_folder` (`train`), `predict_video`
(`predict`), `ddp_demo` (`ddp-demo`). Everything else lives in the submodules (`ve.data`, `ve.layers`, `ve.models`,
`ve.train`, `ve.finetune`, `ve.distributed`, `ve.inference`, `ve.experiments`). The command line itself,
`vivit_edu.cli`, is not imported here: it is the top of the package, and only `python -m vivit_edu` loads it.
"""
__version__ = "0.0.1"

from .core import check_shape, count_parameters, format_count, get_device, parameter_table, seed_everything, cache_dir, to_channels_last
from .data.video import VideoError, VideoInfo, iter_frames, probe_video, read_video, write_video
from .data.synthetic import make_embedded_dataset, make_embedded_rldd
from .data.datasets import (UCF101, RLDD, VideoFolder, VideoClips, UniformSampler, ConsecutiveSampler, video_transform,
                            BadVideoWarning, average_by_video, clip_datasets, make_example_folder)
from .layers.attention import attention_maps
from .layers.non_local import NonLocalBlock
from .models.vivit import (vivit, vivit_config, ViViTConfig, VIVIT_PRESETS, VIVIT_VARIANTS, SpatioTemporalViViT,
                           FactorisedEncoderViViT, FactorisedSelfAttentionViViT, FactorisedDotProductViViT,
                           from_vit_pytorch, load_vit_pytorch_state_dict, from_hf_vivit, load_hf_vivit_state_dict)
from .models.resnet_nl import nl_resnet50, NonLocalResNet
from .pretrained import ImageViT, read_image_vit, load_image_vit, vivit_from_image
from .train import TrainConfig, Trainer, fit, evaluate, load_weights, save_weights, History, EvalResult, RunSpec, load_run
from .finetune import (FineTuneCase, CASES, apply_case, case_table, recommend_case, grow_head, mix_with_rehearsal,
                       RehearsalDataset, finetune_report, trainable_parameters)
from .distributed import train_folder, ddp_demo
from .inference import predict_video, load_model
from .experiments import ExperimentConfig, EXPERIMENT_PRESETS, run_experiments, run_table1, run_table2
