"""ONNX export of an SSD, with the detections computed inside the graph (ONNX ``NonMaxSuppression``) or raw.

The graph's input is ``images: float32 [B, 3, S, S]``, RGB in 0..1, already warped to the model's input size S
(the batch axis is dynamic); the preprocessing ``(255 * x - mean) / std`` is inside the graph. Outputs:

- detections (default), padded to ``K = detections_per_img`` rows per image, best first:
  ``boxes [B, K, 4]`` xyxy normalised to 0..1 of the input, ``scores [B, K]``, ``labels [B, K]`` int64 and
  ``num_detections [B]`` int64; rows past ``num_detections`` are zeros (label 0). Fixed shapes whatever the
  image holds, so every runtime batches them and each image's rows are a plain slice;
- raw (``raw=True``): the head outputs ``loc [B, P, 4]``, ``conf [B, P, C]`` (logits) and the default boxes
  ``priors [P, 4]`` (cx, cy, w, h normalised) for users who post-process themselves.

The model's config (class names, input size, thresholds, variances) is stored as JSON in the ONNX
``metadata_props`` under ``"ssd"``, so the .onnx file alone is enough to rebuild a detector around it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.onnx import register_custom_op_symbolic
from torch.onnx.symbolic_helper import parse_args
from torchvision.ops import batched_nms

from ..boxes import cxcywh_to_xyxy, decode
from ..config import ModelConfig
from ..errors import DataError, SSDError
from ..model.ssd import SSD
from ..postprocess import PostProcessSettings

METADATA_KEY = "ssd"
METADATA_VERSION = 1
INPUT_NAME = "images"
DETECTION_OUTPUTS = ("boxes", "scores", "labels", "num_detections")
RAW_OUTPUTS = ("loc", "conf", "priors")
MIN_OPSET = 17


@torch.library.custom_op("ssd::non_max_suppression", mutates_args=())
def non_max_suppression(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` in PyTorch, exported as that op: ``selected [N, 3]`` of (batch, class, box).

    ``boxes_xyxy: Tensor[B, P, 4]``, ``scores: Tensor[B, M, P]``. Per batch entry and class: greedy NMS over the
    boxes with ``score > score_threshold`` (a box goes when its IoU with a kept one is ``> iou_threshold``).
    Rows are ordered by batch, class, then score descending, as ONNX Runtime orders them.
    """
    batch, num_classes, num_boxes = scores.shape
    flat_scores = scores.reshape(-1)  # [B*M*P], index = (b * M + m) * P + p
    candidates = torch.nonzero(flat_scores > score_threshold).squeeze(1)
    group = torch.div(candidates, num_boxes, rounding_mode="floor")  # b * M + m
    box_idx = candidates % num_boxes
    cand_boxes = boxes_xyxy[torch.div(group, num_classes, rounding_mode="floor"), box_idx]
    # float64: batched_nms separates the groups by offsetting coordinates, which float32 would round
    kept = batched_nms(cand_boxes.double(), flat_scores[candidates].double(), group, iou_threshold)
    kept = kept[torch.sort(group[kept], stable=True).indices]  # by group, score order kept inside
    group, box_idx = group[kept], box_idx[kept]
    return torch.stack([torch.div(group, num_classes, rounding_mode="floor"), group % num_classes, box_idx], dim=1)


@parse_args("v", "v", "f", "f")
def _non_max_suppression_symbolic(g, boxes_xyxy, scores, iou_threshold: float, score_threshold: float):
    """The ONNX node for :func:`non_max_suppression`; corners in either order are allowed by the op."""
    return g.op(
        "NonMaxSuppression",
        boxes_xyxy,
        scores,
        g.op("Constant", value_t=torch.tensor([torch.iinfo(torch.int64).max], dtype=torch.int64)),
        g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
        g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
    )


def padded_detections(
    loc: Tensor, conf: Tensor, priors_cxcywh: Tensor, variances: Sequence[float], settings: PostProcessSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``ssd.postprocess.postprocess`` in fixed shapes: the exported graph's detection outputs.

    ``loc: Tensor[B, P, 4]``, ``conf: Tensor[B, P, C]`` (logits). Per image and class the candidates are the
    ``topk_candidates`` best scores above ``score_thresh``; NMS runs on them; the best ``detections_per_img``
    over all classes are kept. Returns ``boxes_xyxy [B, K, 4]`` normalised to the input, ``scores [B, K]``,
    ``labels [B, K]`` and ``num_detections [B]``, rows best first and zero past ``num_detections``.
    """
    num_priors, num_classes = conf.shape[1], conf.shape[2]
    boxes = cxcywh_to_xyxy(decode(loc, priors_cxcywh, variances)).clamp(0.0, 1.0)  # [B, P, 4]
    scores = torch.softmax(conf, dim=-1)[..., 1:].transpose(1, 2)  # [B, C-1, P], background dropped
    k = min(settings.topk_candidates, num_priors)
    top_scores, top_prior = scores.topk(k, dim=2)  # [B, C-1, k]
    cand_boxes = boxes.gather(1, top_prior.reshape(-1, (num_classes - 1) * k, 1).expand(-1, -1, 4))  # [B, (C-1)k, 4]

    # one NMS problem per (image, class): the op's batch axis runs over both, each with its own k candidates
    selected = non_max_suppression(
        cand_boxes.reshape(-1, k, 4), top_scores.reshape(-1, 1, k), settings.nms_thresh, settings.score_thresh
    )  # [N, 3] of ((image * (C-1) + class), 0, candidate)
    kept = torch.zeros_like(top_scores, dtype=torch.bool).reshape(-1, 1, k)
    kept[selected[:, 0], selected[:, 1], selected[:, 2]] = True
    kept_scores = torch.where(
        kept.reshape(-1, (num_classes - 1) * k), top_scores.reshape(-1, (num_classes - 1) * k), -1.0
    )

    det_scores, det_idx = kept_scores.topk(min(settings.detections_per_img, (num_classes - 1) * k), dim=1)  # [B, K]
    valid = det_scores >= 0.0  # softmax scores are >= 0; dropped candidates hold -1
    det_boxes = cand_boxes.gather(1, det_idx[..., None].expand(-1, -1, 4))  # [B, K, 4]
    det_labels = torch.div(det_idx, k, rounding_mode="floor") + 1
    return (
        torch.where(valid[..., None], det_boxes, 0.0),
        torch.where(valid, det_scores, 0.0),
        torch.where(valid, det_labels, 0),
        valid.sum(dim=1),
    )


class ExportableSSD(nn.Module):
    """An SSD as one tensor function for export: ``images [B, 3, S, S]`` in 0..1 to detections or raw outputs.

    Shares the network's weights with ``model``. Raw mode returns ``(loc, conf)``; :func:`export_onnx` adds the
    constant ``priors`` output to the file, which a traced function cannot return.
    """

    def __init__(self, model: SSD, raw: bool = False) -> None:
        super().__init__()
        self.net = model.net
        self.raw = raw
        self.variances = list(model.config.variances)
        self.settings = model.postprocess_settings
        self.register_buffer("priors", model.priors.clone(), persistent=False)  # [P, 4] cx cy w h, normalised
        self.register_buffer("image_mean", model.image_mean.clone(), persistent=False)
        self.register_buffer("image_std", model.image_std.clone(), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        loc, conf = self.net((images * 255.0 - self.image_mean) / self.image_std)
        if self.raw:
            return loc, conf
        return padded_detections(loc, conf, self.priors, self.variances, self.settings)


@dataclasses.dataclass
class ExportInfo:
    """What the metadata of an exported file says: the model's config and whether the outputs are raw."""

    config: ModelConfig
    raw: bool


def export_metadata(model: SSD, raw: bool) -> dict[str, str]:
    """The ``metadata_props`` entries written into an exported file.

    The config's thresholds are the ones the graph was built with (``model.postprocess_settings``).
    """
    settings = model.postprocess_settings
    config = dataclasses.replace(
        model.config,
        score_thresh=settings.score_thresh,
        nms_thresh=settings.nms_thresh,
        topk_candidates=settings.topk_candidates,
        detections_per_img=settings.detections_per_img,
    )
    info = {
        "format_version": METADATA_VERSION,
        "outputs": "raw" if raw else "detections",
        "input": "images: float32 [B, 3, S, S], RGB in 0..1, warped to S x S (S = config.input_size)",
        "config": config.to_dict(),
    }
    return {METADATA_KEY: json.dumps(info)}


def parse_metadata(props: Mapping[str, str], source: str | os.PathLike[str]) -> ExportInfo:
    """Read back :func:`export_metadata` from a file's metadata map; ``source`` names the file in errors."""
    if METADATA_KEY not in props:
        raise DataError(source, f"no '{METADATA_KEY}' metadata: not an ONNX file exported by ssd-detector")
    try:
        info = json.loads(props[METADATA_KEY])
        config = ModelConfig.from_dict(info["config"], source=f"{source}: metadata config")
        outputs = info["outputs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(source, f"damaged '{METADATA_KEY}' metadata ({type(exc).__name__}: {exc})") from None
    if outputs not in ("raw", "detections"):
        raise DataError(source, f"metadata names unknown outputs {outputs!r}")
    return ExportInfo(config=config, raw=outputs == "raw")


def warp_batch(images: Sequence[Tensor], size: int) -> Tensor:
    """Images ``[3, H, W]`` in 0..1 warped to ``Tensor[B, 3, S, S]`` as the model's preprocessing does."""
    for img in images:
        if img.dim() != 3 or img.shape[0] != 3:
            raise SSDError(f"expected images of shape [3, H, W], got {tuple(img.shape)}")
    if not images:
        raise SSDError("need at least one image")
    return torch.cat(
        [
            img[None].float()
            if img.shape[-2:] == (size, size)
            else F.interpolate(img[None].float(), size=(size, size), mode="bilinear", align_corners=False)
            for img in images
        ]
    )


def export_onnx(
    model: SSD,
    path: str | os.PathLike[str],
    *,
    opset: int = MIN_OPSET,
    raw: bool = False,
    batch_size_for_trace: int = 2,
    verify: bool = True,
    verify_images: list[Tensor] | None = None,
    atol: float = 1e-4,
) -> Path:
    """Write ``model`` to ``path`` as ONNX with a dynamic batch axis (inputs and outputs: this module's docstring).

    With ``verify`` the file is run in ONNX Runtime at batch sizes 1 and 3 on ``verify_images`` (three random
    images if None) and compared with the PyTorch model; a disagreement beyond ``atol`` raises SSDError.
    Uses PyTorch's TorchScript-based exporter (``dynamo=False``), which needs no extra package.
    """
    if opset < MIN_OPSET:
        raise SSDError(f"opset {opset} is too old: the export needs opset >= {MIN_OPSET}")
    path = Path(path)
    size = model.config.input_size
    output_names = RAW_OUTPUTS[:2] if raw else DETECTION_OUTPUTS
    register_custom_op_symbolic("ssd::non_max_suppression", _non_max_suppression_symbolic, MIN_OPSET)
    was_training = model.training
    model.eval()
    try:
        example = torch.rand(batch_size_for_trace, 3, size, size, device=model.priors.device)
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based exporter"
            # min() of the candidate counts with P and C, which the model fixes, becomes a constant: as intended
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                ExportableSSD(model, raw).eval(),
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *output_names)},
            )
        onnx_model = onnx.load_from_string(buffer.getvalue())
        if raw:
            _add_constant_output(onnx_model, "priors", model.priors)
        _set_output_shapes(onnx_model, output_shapes(model, raw))
        onnx.helper.set_model_props(onnx_model, export_metadata(model, raw))
        onnx.checker.check_model(onnx_model, full_check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(onnx_model, str(path))
        if verify:
            verify_onnx(model, path, verify_images, atol=atol)
    finally:
        model.train(was_training)
    return path


def output_shapes(model: SSD, raw: bool) -> dict[str, list[int | str]]:
    """The shape of every graph output, ``"batch"`` for the dynamic axis."""
    num_priors, num_classes = model.priors.shape[0], model.num_classes
    if raw:
        return {"loc": ["batch", num_priors, 4], "conf": ["batch", num_priors, num_classes], "priors": [num_priors, 4]}
    settings = model.postprocess_settings
    k = min(settings.detections_per_img, (num_classes - 1) * min(settings.topk_candidates, num_priors))
    return {"boxes": ["batch", k, 4], "scores": ["batch", k], "labels": ["batch", k], "num_detections": ["batch"]}


def _add_constant_output(onnx_model: onnx.ModelProto, name: str, value: Tensor) -> None:
    """Append a graph output ``name`` that always holds ``value`` (a Constant node)."""
    array = value.detach().cpu().numpy()
    onnx_model.graph.node.append(
        onnx.helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(array, name))
    )
    onnx_model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))


def _set_output_shapes(onnx_model: onnx.ModelProto, shapes: Mapping[str, Sequence[int | str]]) -> None:
    """Write the known output shapes into the graph, where the exporter could not infer them."""
    for output in onnx_model.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for value in shapes[output.name]:
            dim = dims.add()
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value


def read_export_info(path: str | os.PathLike[str]) -> ExportInfo:
    """The metadata of an exported file, read without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "ONNX file not found")
    try:
        onnx_model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a damaged file
        raise DataError(path, f"cannot read ONNX file ({type(exc).__name__}: {exc})") from None
    return parse_metadata({p.key: p.value for p in onnx_model.metadata_props}, path)


def verify_onnx(
    model: SSD, path: str | os.PathLike[str], images: list[Tensor] | None = None, *, atol: float = 1e-4
) -> float:
    """Run the exported file in ONNX Runtime (CPU) at batch sizes 1 and 3 and compare it with ``model``.

    Raw outputs are compared relative to their magnitude (at least 1). Detections: the same count per image,
    scores within ``atol`` and, for every detection whose score is not tied with another one within ``atol``,
    the same label and box (normalised) within ``atol``; tied detections may come in either order.
    Returns the largest difference; raises SSDError when a check fails.
    """
    info = read_export_info(path)
    size = model.config.input_size
    if not images:
        images = list(torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0)))
    batch = warp_batch(images, size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3):
        x = batch[torch.arange(n) % len(batch)]
        outputs = [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: to_numpy_images(x)})]
        with torch.no_grad():
            x = x.to(model.priors.device)
            compare = _compare_raw if info.raw else _compare_detections
            worst = max(worst, compare(model, x, outputs, atol))
    return worst


def _compare_raw(model: SSD, x: Tensor, outputs: list[Tensor], atol: float) -> float:
    """Largest difference of loc, conf and priors, relative to each tensor's largest magnitude (at least 1)."""
    loc, conf = model.net(model.preprocess(list(x)))
    worst = 0.0
    for name, ref, got in zip(RAW_OUTPUTS, (loc, conf, model.priors), outputs):
        ref = ref.cpu()
        if ref.shape != got.shape:
            raise SSDError(f"ONNX output {name} has shape {tuple(got.shape)}, PyTorch {tuple(ref.shape)}")
        diff = float((ref - got).abs().max()) / max(1.0, float(ref.abs().max()))
        if diff > atol:
            raise SSDError(f"ONNX Runtime and PyTorch disagree on {name}: max relative difference {diff:.3g} > {atol}")
        worst = max(worst, diff)
    return worst


def _compare_detections(model: SSD, x: Tensor, outputs: list[Tensor], atol: float) -> float:
    """Largest difference of scores and (untied) boxes, image by image; counts and untied labels must match."""
    boxes, scores, labels, counts = outputs
    size = model.config.input_size
    worst = 0.0
    for i, ref in enumerate(model(list(x))):
        n = int(counts[i])
        ref_scores, ref_boxes, ref_labels = ref["scores"].cpu(), ref["boxes"].cpu() / size, ref["labels"].cpu()
        if n != len(ref_scores):
            raise SSDError(f"ONNX Runtime finds {n} detections in image {i}, PyTorch {len(ref_scores)}")
        if n == 0:
            continue
        score_diff = float((scores[i, :n] - ref_scores).abs().max())
        if score_diff > atol:
            raise SSDError(
                f"ONNX Runtime and PyTorch disagree on the scores of image {i}: max difference {score_diff:.3g}"
            )
        gaps = (ref_scores[:, None] - ref_scores[None, :]).abs() + torch.eye(n) * 2.0  # [n, n], diagonal ignored
        untied = gaps.min(dim=1).values > atol
        if not torch.equal(labels[i, :n][untied], ref_labels[untied]):
            raise SSDError(f"ONNX Runtime and PyTorch disagree on the labels of image {i}")
        box_diff = float((boxes[i, :n][untied] - ref_boxes[untied]).abs().max()) if bool(untied.any()) else 0.0
        if box_diff > atol:
            raise SSDError(
                f"ONNX Runtime and PyTorch disagree on the boxes of image {i}: max difference {box_diff:.3g}"
            )
        worst = max(worst, score_diff, box_diff)
    return worst


def to_numpy_images(batch: Tensor) -> np.ndarray:
    """A warped batch as the contiguous float32 array the graph's ``images`` input takes."""
    return np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
