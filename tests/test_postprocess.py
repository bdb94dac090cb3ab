import torch
from torchvision.ops import batched_nms

from ssd.boxes import cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh
from ssd.config import ModelConfig
from ssd.postprocess import PostProcessSettings, best_first, non_max_suppression, padded_detections, postprocess

VAR = [0.1, 0.1, 0.2, 0.2]


def _logits_for(probabilities):
    return torch.log(torch.tensor(probabilities))


def _run(boxes_xyxy, probs, priors_xyxy=None, sizes=((100, 100),), **settings):
    """Head outputs that decode exactly to ``boxes_xyxy`` (normalised) with class ``probs``."""
    boxes_xyxy = torch.tensor(boxes_xyxy, dtype=torch.float32)
    priors = xyxy_to_cxcywh(priors_xyxy if priors_xyxy is not None else boxes_xyxy)
    loc = encode(xyxy_to_cxcywh(boxes_xyxy), priors, VAR)[None]
    conf = _logits_for(probs)[None]
    return postprocess(loc, conf, priors, VAR, list(sizes), PostProcessSettings(**settings))


def test_nms_removes_overlapping_boxes_of_one_class_only():
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]]
    probs = [[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0]]
    out = _run(boxes, probs)[0]
    # box 1 overlaps box 0 (IoU 0.9 > 0.45) with a lower score: suppressed
    assert out["labels"].tolist() == [1, 1]
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(out["boxes"], torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 90]]), atol=1e-4, rtol=0)
    # the same two boxes with different classes are both kept
    probs = [[0.1, 0.9, 0.0], [0.2, 0.0, 0.8], [0.3, 0.7, 0.0]]
    out = _run(boxes, probs)[0]
    assert sorted(out["labels"].tolist()) == [1, 1, 2]


def test_score_threshold_and_per_image_cap():
    boxes = [[0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6], [0.8, 0.8, 0.9, 0.9]]
    probs = [[0.995, 0.005, 0.0], [0.5, 0.5, 0.0], [0.4, 0.6, 0.0]]
    out = _run(boxes, probs)[0]
    assert len(out["scores"]) == 2  # 0.005 <= 0.01 is dropped
    out = _run(boxes, probs, detections_per_img=1)[0]
    torch.testing.assert_close(out["scores"], torch.tensor([0.6]))


def test_boxes_rescaled_to_each_image_and_clipped():
    boxes = [[-0.1, 0.25, 0.5, 1.2]]
    out = _run(boxes, [[0.0, 1.0]], sizes=[(200, 400)])[0]
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 50.0, 200.0, 200.0]]), atol=1e-3, rtol=0)


def _reference(loc, conf, priors, sizes, s: PostProcessSettings):
    """torchvision's SSD post-processing: a loop over images and classes."""
    results = []
    for b in range(loc.shape[0]):
        boxes = cxcywh_to_xyxy(decode(loc[b], priors, VAR)).clamp(0, 1)
        h, w = sizes[b]
        boxes = boxes * torch.tensor([w, h, w, h])
        scores = conf[b].softmax(-1)
        all_b, all_s, all_l = [], [], []
        for c in range(1, scores.shape[1]):
            sc = scores[:, c]
            keep = sc > s.score_thresh
            sc, bx = sc[keep], boxes[keep]
            sc, idx = sc.topk(min(s.topk_candidates, len(sc)))
            all_b.append(bx[idx])
            all_s.append(sc)
            all_l.append(torch.full_like(idx, c))
        bx, sc, lb = torch.cat(all_b), torch.cat(all_s), torch.cat(all_l)
        keep = batched_nms(bx, sc, lb, s.nms_thresh)[: s.detections_per_img]
        results.append({"boxes": bx[keep], "scores": sc[keep], "labels": lb[keep]})
    return results


def test_vectorised_equals_per_class_loop():
    torch.manual_seed(1)
    priors = torch.cat([torch.rand(600, 2), torch.rand(600, 2) * 0.3 + 0.02], dim=1)
    loc = torch.randn(3, 600, 4)
    conf = torch.randn(3, 600, 6) * 2
    sizes = [(100, 200), (300, 300), (50, 80)]
    settings = PostProcessSettings(score_thresh=0.05, topk_candidates=50, detections_per_img=40)
    ours = postprocess(loc, conf, priors, VAR, sizes, settings)
    ref = _reference(loc, conf, priors, sizes, settings)
    for a, b in zip(ours, ref):
        assert len(a["scores"]) == len(b["scores"]) == 40
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"])
        assert a["labels"].tolist() == b["labels"].tolist()


def test_no_detection_above_threshold():
    out = _run([[0.1, 0.1, 0.2, 0.2]], [[1.0, 0.0]])[0]
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,) and out["labels"].shape == (0,)


def test_non_max_suppression_by_hand():
    # A and B overlap with IoU exactly 0.5; C is apart; scores 0.9, 0.8, 0.5
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5], [2.0, 2.0, 3.0, 3.0]]])
    scores = torch.tensor([[[0.9, 0.8, 0.5]]])
    assert non_max_suppression(boxes, scores, 0.5, 0.0).tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2]]  # IoU > thr only
    assert non_max_suppression(boxes, scores, 0.45, 0.0).tolist() == [[0, 0, 0], [0, 0, 2]]
    assert non_max_suppression(boxes, scores, 0.45, 0.5).tolist() == [[0, 0, 0]]  # score must exceed the threshold
    assert non_max_suppression(boxes, scores, 0.45, 0.95).shape == (0, 3)


def test_padded_detections_have_fixed_shapes_best_first():
    """Per class: top-k above threshold, NMS, then the best per image; image 2 has nothing above threshold."""
    num_priors, batch = 500, 3
    centres = torch.rand(num_priors, 2, generator=torch.Generator().manual_seed(0))
    priors = torch.cat([centres, 0.05 + torch.rand(num_priors, 2) * 0.3], dim=1)
    loc = torch.randn(batch, num_priors, 4) * 0.5
    conf = torch.randn(batch, num_priors, 4) * 2.0
    conf[2, :, 1:] = -10.0
    settings = PostProcessSettings(score_thresh=0.3, nms_thresh=0.45, topk_candidates=40, detections_per_img=25)
    boxes, scores, labels, counts = padded_detections(loc, conf, priors, VAR, settings)
    assert boxes.shape == (3, 25, 4) and scores.shape == labels.shape == (3, 25)
    assert counts[0] == 25 and counts[2] == 0  # the per-image cap binds on image 0
    sizes = [(128, 128), (120, 200), (50, 80)]
    for i, ((h, w), det) in enumerate(zip(sizes, postprocess(loc, conf, priors, VAR, sizes, settings))):
        n = int(counts[i])
        assert (scores[i, :n].diff() <= 0).all() and (scores[i, :n] > 0.3).all()
        assert scores[i, n:].eq(0).all() and labels[i, n:].eq(0).all() and boxes[i, n:].eq(0).all()
        torch.testing.assert_close(det["boxes"], boxes[i, :n] * torch.tensor([w, h, w, h]))  # unpadded, in pixels


def test_settings_map_to_and_from_the_model_config():
    config = ModelConfig(score_thresh=0.2, nms_thresh=0.5, topk_candidates=100, detections_per_img=50)
    settings = PostProcessSettings.from_config(config)
    assert settings == PostProcessSettings(0.2, 0.5, 100, 50)
    changed = PostProcessSettings(0.3, 0.6, 10, 5).apply_to(config)
    assert PostProcessSettings.from_config(changed) == PostProcessSettings(0.3, 0.6, 10, 5)
    assert changed.input_size == config.input_size and config.score_thresh == 0.2  # a copy, the rest kept


def test_best_first_ranks_equal_scores_by_index_as_onnx_topk_does():
    scores = torch.tensor([[0.5, 1.0, 0.25, 1.0, 1.0, 0.75]])
    values, indices = best_first(scores, 4)
    assert indices.tolist() == [[1, 3, 4, 5]] and values.tolist() == [[1.0, 1.0, 1.0, 0.75]]
    tied = best_first(torch.ones(2, 3, 50), 5)[1]  # which five topk picks is its choice; their order is not
    assert torch.equal(tied, tied.sort(dim=-1).values) and tied.unique(dim=-1).shape == tied.shape
