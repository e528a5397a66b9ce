"""The domain gate (models/domain.py): Mahalanobis distances, Ledoit-Wolf shrinkage, the gate, its parameters, and
a gated-out modality inside the model."""

import math

import numpy as np
import pytest
import torch

from modeling_ter import TERConfig, TERForEmotionRecognition
from modeling_ter.models import domain
from modeling_ter.models.domain import MahalanobisDomain, fit_mahalanobis, gate_parameters, ledoit_wolf_shrinkage


def test_distance_is_mahalanobis_without_shrinkage():
    torch.manual_seed(0)
    x = torch.randn(400, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (400,))
    stats = fit_mahalanobis(x, y, 3, shrinkage=0.0)
    domain = MahalanobisDomain(3, 5)
    domain.load_statistics(**stats)
    means = torch.stack([x[y == k].mean(0) for k in range(3)])
    residuals = x - means[y]
    precision = torch.linalg.inv(residuals.T @ residuals / len(x))
    query = torch.randn(7, 5, dtype=torch.float64) * 3
    diff = query[:, None] - means[None]
    expected = torch.einsum("bkd,de,bke->bk", diff, precision, diff).sqrt().min(1).values
    assert domain.distance(query.float()).double() == pytest.approx(expected, rel=1e-4)


def test_ledoit_wolf_matches_sklearn():
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 12)) @ rng.standard_normal((12, 12))
    x -= x.mean(0)
    expected = sklearn_covariance.ledoit_wolf_shrinkage(x, assume_centered=True)
    assert ledoit_wolf_shrinkage(torch.tensor(x)) == pytest.approx(expected, rel=1e-10)


def test_gate_keeps_near_and_zeroes_far_and_unfitted_is_identity():
    domain = MahalanobisDomain(2, 3, reference=2.0, width=1.0)
    features = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1e3, 0.0, 0.0], [math.nan, 0.0, 0.0]])
    assert domain.evidence_scale(features).tolist() == [1.0, 1.0, 1.0, 1.0]  # not fitted yet
    domain.load_statistics(torch.eye(3), torch.zeros(2, 3), torch.tensor([True, False]))
    scale = domain.evidence_scale(features)
    assert scale[0] == 1.0 and scale[1] == pytest.approx(math.exp(-1.0)) and scale[2] == 0.0 and scale[3] == 0.0


def test_gate_parameters_quantiles():
    d = torch.arange(1.0, 101.0)
    reference, width = gate_parameters(d, quantile=0.99, reference_quantile=0.5)
    assert reference == pytest.approx(50.5) and width == pytest.approx(99.01 - 50.5)
    assert gate_parameters(d)[0] == pytest.approx(99.01)


def test_domain_buffers_round_trip_state_dict():
    stats = fit_mahalanobis(torch.randn(50, 4), torch.randint(0, 2, (50,)), 2)
    a, b = MahalanobisDomain(2, 4), MahalanobisDomain(2, 4)
    a.load_statistics(**stats)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 4)
    assert torch.equal(a.distance(x), b.distance(x)) and bool(b.fitted)


def test_a_gated_out_modality_drops_out_of_the_fusion_exactly():
    """Audio far outside its training domain: scale 0, vacuous audio opinion, fused = text alone; in-domain audio
    keeps its evidence whole (below the reference distance)."""
    torch.manual_seed(0)
    configs = {"audio": {"embed_dim": 4, "domain_reference": 3.0, "domain_width": 1.0}, "text": {"embed_dim": 5}}
    model = TERForEmotionRecognition(TERConfig(modality_configs=configs, num_labels=3, head_dropout=0.0)).eval()
    train = torch.randn(60, 4)
    model.domains["audio"].load_statistics(**fit_mahalanobis(train, torch.arange(60) % 3, 3))
    text = torch.randn(2, 5)
    audio = torch.stack([train[0], torch.full((4,), 1e3)])  # in domain, far away
    with torch.no_grad():
        both = model(audio_embeds=audio, text_embeds=text)
        text_only = model(text_embeds=text)
    assert both.modality_domain_scale[:, 0].tolist() == [1.0, 0.0]
    assert both.modality_domain_scale[:, 1].tolist() == [1.0, 1.0]  # no gate on text
    assert both.modality_domain_distance[1, 0] > 100 and both.modality_domain_distance[0, 0] < 3.0
    assert torch.equal(both.modality_alpha[1, 0], torch.ones(3))
    torch.testing.assert_close(both.alpha[1], text_only.alpha[1], rtol=0, atol=0)
    assert not torch.equal(both.alpha[0], text_only.alpha[0])


def test_fit_in_chunks_equals_one_pass(monkeypatch):
    # The fit sums over chunks of rows (memory flat in N); chunks of 7 rows, with classes split across them, give
    # the statistics of one pass over all rows.
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(90, 6, generator=generator) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0, 5.0]) + 2.0
    y = torch.randint(0, 4, (90,), generator=generator)
    whole = fit_mahalanobis(x, y, 4)
    monkeypatch.setattr(domain, "FIT_CHUNK", 7)
    chunked = fit_mahalanobis(x, y, 4)
    for key in ("whitening", "whitened_means"):
        assert torch.allclose(chunked[key], whole[key], rtol=1e-5, atol=1e-6), key
    assert float(chunked["shrinkage"]) == pytest.approx(float(whole["shrinkage"]), rel=1e-9)
