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
from torch import Tensor, nn
from torch.onnx import register_custom_op_symbolic
from torch.onnx.symbolic_helper import parse_args

from ..config import ModelConfig
from ..errors import DataError, SSDError
from ..images import resize_to_square
from ..model.ssd import SSD
from ..postprocess import padded_detections

METADATA_KEY = "ssd"
METADATA_VERSION = 1
INPUT_NAME = "images"
DETECTION_OUTPUTS = ("boxes", "scores", "labels", "num_detections")
RAW_OUTPUTS = ("loc", "conf", "priors")
MIN_OPSET = 17


@parse_args("v", "v", "f", "f")
def _non_max_suppression_symbolic(g, boxes_xyxy, scores, iou_threshold: float, score_threshold: float):
    """The ONNX node for ``ssd.postprocess.non_max_suppression``; corners in either order are allowed by the op."""
    return g.op(
        "NonMaxSuppression",
        boxes_xyxy,
        scores,
        g.op("Constant", value_t=torch.tensor([torch.iinfo(torch.int64).max], dtype=torch.int64)),
        g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
        g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
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
    config = model.postprocess_settings.apply_to(model.config)
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
    batch = resize_to_square(images, size)
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
