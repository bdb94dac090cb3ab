"""Default boxes fitted to boxes: never worse than the model's own on the objective, ratios that follow the data,
deterministic, positives counted as the matcher assigns them, and fitted values that rebuild the same default
boxes through a config, a checkpoint and ONNX."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_convert

import ssd
from model_helpers import TINY_96
from ssd.boxes import match
from ssd.model.priors import generate_priors
from ssd.prior_fit import fit_priors


def random_boxes(
    count: int, scale: tuple[float, float], aspect: float | tuple[float, float], seed: int
) -> torch.Tensor:
    """``count`` boxes normalised to 0..1: sqrt(wh) uniform in ``scale``, w/h ``aspect`` (or log-uniform in a
    range), at uniform positions inside the image."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(count, generator=g) * (scale[1] - scale[0]) + scale[0]
    if isinstance(aspect, tuple):
        lo, hi = torch.log(torch.tensor(aspect))
        a = torch.exp(torch.rand(count, generator=g) * (hi - lo) + lo)
    else:
        a = torch.full((count,), float(aspect))
    w, h = (s * a.sqrt()).clamp(max=0.99), (s / a.sqrt()).clamp(max=0.99)
    cx = torch.rand(count, generator=g) * (1 - w) + w / 2
    cy = torch.rand(count, generator=g) * (1 - h) + h / 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


@pytest.fixture(scope="module")
def tiny():
    config = dict(TINY_96, aspect_ratios=[[2], [2], [2], [2]])
    return ssd.build_model("ssd300_vgg16", 4, **config)


SETS = {
    "long thin (w/h = 3)": dict(scale=(0.12, 0.4), aspect=3.0),
    "small": dict(scale=(0.04, 0.12), aspect=(0.5, 2.0)),
    "VOC-like": dict(scale=(0.1, 0.9), aspect=(0.33, 3.0)),
}


@pytest.mark.parametrize("name", list(SETS))
def test_the_fit_never_lowers_coverage_and_is_deterministic(tiny, name):
    boxes = random_boxes(600, seed=1, **SETS[name])
    fit = fit_priors(boxes, tiny.config, tiny.feature_sizes)
    assert fit.after.key() >= fit.before.key()
    assert fit_priors(boxes, tiny.config, tiny.feature_sizes) == fit  # the same search, the same answer


def test_boxes_of_aspect_three_get_ratios_near_three(tiny):
    boxes = random_boxes(600, scale=(0.12, 0.4), aspect=3.0, seed=2)
    fit = fit_priors(boxes, tiny.config, tiny.feature_sizes)
    assert fit.after.share_iou50 > fit.before.share_iou50 + 0.2  # 2:1 boxes fit 3:1 objects poorly
    ratios = [r for row in fit.spec.aspect_ratios for r in row]
    assert any(2.5 <= r <= 3.6 for r in ratios), ratios


def test_fitted_values_rebuild_the_same_default_boxes_through_a_checkpoint_and_onnx(tiny, tmp_path):
    fit = fit_priors(random_boxes(400, scale=(0.05, 0.3), aspect=(0.5, 3.0), seed=3), tiny.config, tiny.feature_sizes)
    values = fit.spec.config_values(96)
    model = ssd.build_model("ssd300_vgg16", 4, **{**TINY_96, **values})
    s = fit.spec
    expected = generate_priors(model.feature_sizes, 96, s.min_sizes, s.max_sizes, s.aspect_ratios, TINY_96["steps"])
    torch.testing.assert_close(model.priors, expected, rtol=0, atol=1e-6)
    ssd.save(model, tmp_path / "fitted.pt")
    loaded = ssd.load(tmp_path / "fitted.pt")
    assert torch.equal(loaded.priors, model.priors) and loaded.config.min_sizes == values["min_sizes"]
    from ssd.export import export_onnx

    export_onnx(loaded.eval(), tmp_path / "fitted.onnx", verify=True)  # ONNX Runtime's detections = PyTorch's


def test_on_voc_like_boxes_the_papers_ssd300_boxes_stay_about_as_good():
    """Boxes with VOC's statistics (scale log-normal about 0.3 of the side, aspect log-normal about 1): the paper's
    boxes cover nearly all of them already, and the fit may not do worse."""
    model = ssd.build_model("ssd300_vgg16", 21)
    g = torch.Generator().manual_seed(4)
    n = 200
    s = torch.exp(torch.randn(n, generator=g) * 0.6 + torch.log(torch.tensor(0.3))).clamp(0.03, 0.95)
    a = torch.exp(torch.randn(n, generator=g) * 0.5)
    w, h = (s * a.sqrt()).clamp(max=0.99), (s / a.sqrt()).clamp(max=0.99)
    cx, cy = torch.rand(n, generator=g) * (1 - w) + w / 2, torch.rand(n, generator=g) * (1 - h) + h / 2
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    fit = fit_priors(boxes, model.config, model.feature_sizes)
    assert fit.before.share_iou50 > 0.95 and fit.after.key() >= fit.before.key()


def test_no_map_gets_default_boxes_smaller_than_its_cells(tiny):
    from ssd.prior_fit import cell_sizes

    boxes = random_boxes(500, scale=(0.03, 0.1), aspect=(0.5, 2.0), seed=5)  # objects of 3-10 px in 96
    fit = fit_priors(boxes, tiny.config, tiny.feature_sizes)
    cells = cell_sizes(tiny.config, tiny.feature_sizes)
    assert [round(c * 96) for c in cells] == [8, 16, 32, 48]
    assert all(size >= cell - 1e-6 for size, cell in zip(fit.spec.min_sizes, cells)), fit.spec.min_sizes
    assert fit.after.key() >= fit.before.key()


def test_positives_per_box_are_what_the_matcher_assigns_to_a_lone_object(tiny):
    """Each box alone in its image: the matcher's positives (every prior at IoU >= 0.5, or the best one) counted
    with ssd.boxes.match agree with the score's mean."""
    boxes = random_boxes(200, scale=(0.05, 0.6), aspect=(0.5, 2.0), seed=3)
    priors = box_convert(tiny.priors, "cxcywh", "xyxy")
    matched = match(boxes[:, None, :].float(), torch.ones(len(boxes), 1, dtype=torch.bool), priors)  # [G, P]
    expected = (matched >= 0).sum(dim=1).double().mean().item()
    score = fit_priors(boxes, tiny.config, tiny.feature_sizes).before
    assert score.mean_positives == pytest.approx(expected, abs=1e-9)
    assert 1.0 < expected < 20.0  # some boxes have several positives, none is without one
