"The tiny training run the checkpoint and fault tests share: an epoch takes milliseconds, three classes, one that is learnable."
import torch
from torch import nn


def tiny_run(*, width: int = 4, **config):
    "Model, data and `TrainConfig` (defaults below, overridden by `config`); `width` makes the checkpoint bigger."
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 4, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    x[y == 1] += 0.5
    data = torch.utils.data.TensorDataset(x, y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Dropout(0.2), nn.Linear(width, 3))
    from vivit_edu.train import TrainConfig
    config = TrainConfig(**{**dict(batch_size=8, lr=1e-2, warmup_epochs=1, mixup_alpha=0.4, progress=False, live_plot=False), **config})
    return model, data, config
