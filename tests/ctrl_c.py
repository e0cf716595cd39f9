"""Ctrl-C in tests. A process started in the background by a non-interactive shell, or a pytest-xdist worker, has
SIGINT ignored, and its children inherit that: a test that sends Ctrl-C must give its process the default handler back."""
import contextlib, signal


def default_sigint():
    "`preexec_fn` for a child that must receive Ctrl-C: SIGINT back to the default (Python then raises KeyboardInterrupt)."
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def ctrl_c_in_this_process():
    "Python's own Ctrl-C handler in this process for the block (whatever it inherited), then what was there before."
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try: yield
    finally: signal.signal(signal.SIGINT, before)
