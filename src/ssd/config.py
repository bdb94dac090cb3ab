"""Configuration dataclasses, built from YAML files and ``key=value`` overrides.

Unknown keys are errors, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError, SSDError
from .metrics import METRICS

PRIOR_FITS = ("off", "auto", "force")


def prior_fit_mode(value: object) -> object:
    """``model.prior_fit`` as one of PRIOR_FITS: YAML reads a bare ``off`` as False (and ``on`` as True)."""
    return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value


BACKBONES = ("vgg16", "mobilenet_v3_large", "mobilenet_v2", "resnet50")
HEADS = ("conv", "separable")


@dataclass
class ModelConfig:
    """Everything needed to rebuild an SSD: architecture, default boxes, loss and inference settings.

    Sizes (``min_sizes``, ``max_sizes``, ``steps``) are in pixels of the network input;
    ``scales`` is the alternative spelling as fractions of the input side (K + 1 values for K maps).
    """

    name: str = "ssd300_vgg16"
    num_classes: int = 21  # including background at index 0
    class_names: list[str] | None = None
    input_size: int = 300
    backbone: str = "vgg16"  # one of BACKBONES
    head: str = "conv"  # conv: the paper's 3x3 convolutions | separable: SSDLite's depthwise 3x3 + BN + ReLU6, 1x1
    width: float = 1.0  # channel multiplier of the base and the extra layers (1.0 = the paper; not for resnet50)
    batch_norm: bool = False  # VGG only: batch norm after every conv (not in the paper; helps training from scratch)
    reduced_tail: bool = False  # MobileNetV3 only: halve the C4/C5 channels (torchvision's SSDLite from scratch)
    # extra feature layers after the base: [mid_channels, out_channels, kernel, stride, padding], built in the
    # backbone's style (VGG: 1x1 + kxk conv; MobileNets: 1x1 + depthwise kxk + 1x1; ResNet: with batch norm)
    extras: list[list[int]] = field(
        default_factory=lambda: [[256, 512, 3, 2, 1], [128, 256, 3, 2, 1], [128, 256, 3, 1, 0], [128, 256, 3, 1, 0]]
    )
    l2norm_scale: float = 20.0
    # head convolutions from normal(0, head_init_std); None: Xavier (conv head) or normal(0, 0.03) (separable)
    head_init_std: float | None = None
    # initial background probability of every default box, from the class-score biases (RetinaNet's prior
    # initialisation); None = zero biases, as in the paper. 0.99 steadies the first steps of training from scratch
    background_prior: float | None = None
    # default boxes
    min_sizes: list[float] | None = field(default_factory=lambda: [30, 60, 111, 162, 213, 264])
    max_sizes: list[float] | None = field(default_factory=lambda: [60, 111, 162, 213, 264, 315])
    scales: list[float] | None = None
    steps: list[float] | None = field(default_factory=lambda: [8, 16, 32, 64, 100, 300])
    aspect_ratios: list[list[float]] = field(default_factory=lambda: [[2], [2, 3], [2, 3], [2, 3], [2], [2]])
    clip: bool = False
    # off: the sizes and ratios above; auto: ssd train fits them to the training boxes first (ssd.prior_fit),
    # refused when train.weights holds heads trained for other boxes; force: fits them even then
    prior_fit: str = "off"
    variances: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    # preprocessing, on the 0..255 scale: (255 * x - mean) / std
    image_mean: list[float] = field(default_factory=lambda: [123.0, 117.0, 104.0])
    image_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    # training: matching and loss
    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    loc_weight: float = 1.0
    # inference
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    topk_candidates: int = 400
    detections_per_img: int = 200

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check that the settings are consistent; raise SSDError naming the offending key."""
        k = len(self.aspect_ratios)
        if self.num_classes < 2:
            raise SSDError(f"model.num_classes must be >= 2 (background + at least one class), got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise SSDError(
                f"model.class_names has {len(self.class_names)} names but num_classes is {self.num_classes}"
                " (the first name is the background)"
            )
        if self.scales is None and (self.min_sizes is None or self.max_sizes is None):
            raise SSDError("model: give either scales or both min_sizes and max_sizes")
        if self.background_prior is not None and not 0.0 < self.background_prior < 1.0:
            raise SSDError(f"model.background_prior must lie strictly between 0 and 1, got {self.background_prior}")
        if self.scales is not None and len(self.scales) != k + 1:
            raise SSDError(f"model.scales needs {k + 1} values for {k} feature maps, got {len(self.scales)}")
        sized = ["steps"] + (["min_sizes", "max_sizes"] if self.scales is None else [])
        for key in sized:
            value = getattr(self, key)
            if value is not None and len(value) != k:
                raise SSDError(f"model.{key} needs {k} values (one per feature map), got {len(value)}")
        if self.backbone not in BACKBONES:
            raise SSDError(f"model.backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.head not in HEADS:
            raise SSDError(f"model.head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if any(len(row) != 5 for row in self.extras):
            raise SSDError("model.extras rows are [mid_channels, out_channels, kernel, stride, padding]")
        if self.backbone == "resnet50" and self.width != 1.0:
            raise SSDError("model.width must be 1.0 for the resnet50 backbone")
        if self.reduced_tail and self.backbone != "mobilenet_v3_large":
            raise SSDError(f"model.reduced_tail is for the mobilenet_v3_large backbone, not {self.backbone}")
        if self.batch_norm and self.backbone != "vgg16":
            raise SSDError(f"model.batch_norm is for the vgg16 backbone; {self.backbone} always has batch norm")
        if len(self.variances) != 4 or len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise SSDError("model.variances needs 4 values and image_mean/image_std 3 each")
        if self.width <= 0:
            raise SSDError(f"model.width must be positive, got {self.width}")
        self.prior_fit = prior_fit_mode(self.prior_fit)
        if self.prior_fit not in PRIOR_FITS:
            raise SSDError(f"model.prior_fit must be one of {', '.join(PRIOR_FITS)}, got {self.prior_fit!r}")

    def prior_sizes(self) -> tuple[list[float], list[float]]:
        """Min and max default-box sizes per feature map, as fractions of the input side."""
        if self.scales is not None:
            return list(self.scales[:-1]), list(self.scales[1:])
        assert self.min_sizes is not None and self.max_sizes is not None
        return [s / self.input_size for s in self.min_sizes], [s / self.input_size for s in self.max_sizes]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "model config") -> ModelConfig:
        return from_dict(cls, values, source)


def from_dict(cls: type, values: dict[str, Any], source: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys raise SSDError naming ``source``."""
    if not isinstance(values, dict):
        raise SSDError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SSDError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise SSDError(f"{source}: {exc}") from None


@dataclass
class TrainConfig:
    """The training recipe. Defaults are the paper's SSD300 VOC recipe (Caffe ``ssd_pascal.py``).

    ``lr`` is the learning rate for ``base_batch_size`` images per step; with another ``batch_size`` it is
    scaled linearly (``lr * batch_size / base_batch_size``), so changing the batch size needs no other change.
    """

    iterations: int = 120_000
    batch_size: int = 32  # global batch, split over the processes of a torchrun job
    base_batch_size: int = 32
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_factor: float = 2.0  # biases: twice the learning rate and no weight decay, as in the original
    decay_biases_and_norms: bool = False  # weight decay on biases and norm weights too (torchvision, mmdetection)
    schedule: str = "step"  # step (x gamma at each milestone) | cosine | wsd (constant, then linear to 0)
    decay_fraction: float = 0.2  # wsd: the share of the run over which the learning rate falls to 0
    milestones: list[int] = field(default_factory=lambda: [80_000, 100_000])
    gamma: float = 0.1
    warmup_iters: int = 1000  # linear warm-up from warmup_factor * lr: the cure for early NaN losses
    warmup_factor: float = 0.01
    grad_clip: float | None = None  # max gradient norm, None = off
    amp: bool = False  # mixed precision: bf16 on CPU (where supported), fp16 with loss scaling on CUDA
    amp_dtype: str = "auto"  # auto | bf16 | fp16
    zoom_out_max: float = 4.0  # augmentation: zoom out up to this factor (1 = off), as the paper's "expand"
    random_crop: bool = True  # augmentation: the paper's min-IoU random crop
    photometric: bool = True  # augmentation: the paper's photometric distortions (brightness, contrast, colour)
    # memory layout: auto (the faster one for this device and backbone, ssd.layout) | true | false
    channels_last: bool | str = "auto"
    sync_bn: bool = True  # SyncBatchNorm across GPUs for models with batch norm (CUDA only)
    workers: int = 4
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    eval_interval: int = 10_000  # iterations between evaluations; 0 = only at the end
    eval_metric: str = "voc07"
    checkpoint_interval: int = 2000
    keep_difficult: bool = True  # train on VOC 'difficult' objects, as the original did
    skip_bad: bool = True  # replace an unreadable image by another of the epoch (warned once) instead of stopping
    weights: str | None = None  # start from a checkpoint (another dataset's: heads are re-initialised)
    backbone_weights: str | None = None  # torchvision ImageNet weights file of the backbone
    max_minutes: float | None = None  # stop (and save) after this much training time (evaluations included) in all
    # sessions of the run; schedule_by_time: cosine/wsd progress = max(iteration / iterations, minutes / max_minutes)
    schedule_by_time: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise SSDError(f"train.optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "wsd"):
            raise SSDError(f"train.schedule must be step, cosine or wsd, got {self.schedule!r}")
        if not 0 < self.decay_fraction <= 1:
            raise SSDError(f"train.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.schedule_by_time and (not self.max_minutes or self.schedule == "step"):
            raise SSDError("train.schedule_by_time needs train.max_minutes and a cosine or wsd schedule")
        if self.amp_dtype not in ("auto", "bf16", "fp16"):
            raise SSDError(f"train.amp_dtype must be auto, bf16 or fp16, got {self.amp_dtype!r}")
        if self.iterations < 1 or self.batch_size < 1 or self.base_batch_size < 1 or self.checkpoint_interval < 1:
            raise SSDError("train.iterations, batch_size, base_batch_size and checkpoint_interval must be positive")
        if self.eval_interval < 0 or self.workers < 0:
            raise SSDError("train.eval_interval and train.workers must be >= 0 (eval_interval 0: only at the end)")
        if self.channels_last not in ("auto", True, False):
            raise SSDError(f"train.channels_last must be auto, true or false, got {self.channels_last!r}")
        if self.eval_metric not in METRICS:
            raise SSDError(f"train.eval_metric must be one of {', '.join(METRICS)}, got {self.eval_metric!r}")

    @property
    def scaled_lr(self) -> float:
        """The learning rate actually used: linear scaling with the batch size."""
        return self.lr * self.batch_size / self.base_batch_size


@dataclass
class RunConfig:
    """A training run: the model preset with its overrides, the recipe, and the dataset's data YAML."""

    preset: str = "ssd300_vgg16"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields overriding the preset
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "model": dict(self.model),
            "train": dataclasses.asdict(self.train),
            "data": self.data,
        }


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); values are parsed as YAML (numbers, lists, null)."""
    import yaml

    if "=" not in text:
        raise SSDError(f"override {text!r} must look like key=value (e.g. train.lr=0.01)")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SSDError(f"override {text!r}: cannot parse the value ({exc})") from None
    return key.strip().split("."), value


def run_config_from_dict(values: dict[str, Any], source: str, overrides: list[str] = ()) -> RunConfig:
    """Build a RunConfig from a mapping (a YAML file's content) plus ``key=value`` overrides."""
    values = dict(values or {})
    unknown = sorted(set(values) - {"preset", "model", "train", "data"})
    if unknown:
        raise SSDError(f"{source}: unknown section(s) {', '.join(unknown)}; known: preset, model, train, data")
    model = dict(values.get("model") or {})
    train = dict(values.get("train") or {})
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] in ("preset", "data") and len(path) == 1:
            values[path[0]] = value
        elif len(path) == 2 and path[0] == "train" and path[1] in train_keys:
            train[path[1]] = value
        elif len(path) == 2 and path[0] == "model" and path[1] in model_keys:
            model[path[1]] = value
        elif len(path) == 1 and path[0] in train_keys:
            train[path[0]] = value
        elif len(path) == 1 and path[0] in model_keys:
            model[path[0]] = value
        else:
            raise SSDError(f"override {text!r}: unknown key; use train.<key>, model.<key>, preset or data")
    unknown_model = sorted(set(model) - model_keys)
    if unknown_model:
        raise SSDError(f"{source}: unknown model key(s) {', '.join(unknown_model)}")
    return RunConfig(
        preset=values.get("preset") or "ssd300_vgg16",
        model=model,
        train=from_dict(TrainConfig, train, f"{source}: train"),
        data=values.get("data"),
    )


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_config_names() -> list[str]:
    """The names of the configs that come with the package (``ssd train --config NAME``)."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def resolve_config(name: str) -> Path:
    """The config file ``name`` means: an existing file, else for a name without suffix the shipped config of that
    name (a directory of that name is not a config); DataError otherwise, listing the shipped configs for a name."""
    file = Path(name)
    if file.is_file():
        return file
    if file.suffix:
        raise DataError(file, "config file not found")
    shipped = SHIPPED_CONFIGS / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise DataError(file, f"config file not found (shipped configs: {', '.join(shipped_config_names())})")


def load_run_config(path: str, overrides: list[str] = ()) -> RunConfig:
    """Read a run config YAML (``preset``, ``model``, ``train``, ``data``); a bare name means a shipped config."""
    file = resolve_config(path)
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(file, f"invalid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise DataError(file, "a config file must be a mapping with the sections preset, model, train, data")
    config = run_config_from_dict(values, str(file), list(overrides))
    if config.data and not Path(config.data).is_absolute():
        relative = file.parent / config.data  # data paths in a config are relative to the config file
        if relative.exists():
            config.data = str(relative)
    return config
