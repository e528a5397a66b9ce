"""The fold models of the cross-fitting (training/crossfit.py): all folds trained at once by `torch.func.vmap` are
the models the plain training step would give, each fold independent of the others."""

import types

import numpy as np
import pytest
import torch

from modeling_ter import TERConfig, TERForEmotionRecognition
from modeling_ter.data.feature_cache import CachedFeatures
from modeling_ter.training.crossfit import cross_fit, fit_fold_heads, heads_config

NUM_ITEMS, NUM_LABELS = 60, 3


@pytest.fixture
def setup():
    config = TERConfig(
        modality_configs={
            "audio": {"embed_dim": 8, "num_feature_layers": 3, "use_weighted_layer_sum": True},
            "text": {"embed_dim": 6},
        },
        num_labels=NUM_LABELS,
        head_hidden_size=16,
        head_dropout=0.0,
    )
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_LABELS, (NUM_ITEMS,), generator=generator)
    audio = torch.randn(NUM_ITEMS, 3, 8, generator=generator) + labels[:, None, None] * 0.5
    text = torch.randn(NUM_ITEMS, 1, 6, generator=generator) - labels[:, None, None] * 0.5
    mask = torch.ones(NUM_ITEMS, 2, dtype=torch.bool)
    mask[::4, 1] = False  # some items without text
    features = CachedFeatures(modalities=("audio", "text"), features={"audio": audio, "text": text}, mask=mask)
    rows = np.arange(NUM_ITEMS)
    folds = [(rows[rows % 3 != j], rows[rows % 3 == j]) for j in range(3)]
    args = types.SimpleNamespace(
        seed=7,
        annealing_epochs=1.0,
        learning_rate=1e-2,
        weight_decay=1e-5,
        augmentations=(),
        modality_dropout=0.0,
        early_stopping_patience=100,
    )
    return config, features, labels, folds, args


def _plain_training(config, features, labels, train_rows, args, seed, batch_size, epochs):
    """The reference: one model, the model's own forward and loss, Adam, the same batches the fold trainer draws."""
    torch.manual_seed(seed)
    model = TERForEmotionRecognition(heads_config(config))
    steps_per_epoch = -(-len(train_rows) // batch_size)
    model.trusted_ce.annealing_steps = max(1, round(args.annealing_epochs * steps_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.as_tensor(train_rows)
    step = 0
    for _ in range(epochs):
        needed = steps_per_epoch * batch_size
        orders = [rows[torch.randperm(len(rows), generator=generator)] for _ in range(-(-needed // len(rows)))]
        for index in torch.cat(orders)[:needed].view(steps_per_epoch, batch_size):
            embeds = {f"{m}_embeds": features.features[m][index] for m in features.modalities}
            loss = model(**embeds, modality_mask=features.mask[index], labels=labels[index], global_step=step).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


def test_folds_trained_at_once_equal_the_plain_training_of_each(setup):
    config, features, labels, folds, args = setup
    models = fit_fold_heads(config, features, labels, folds, epochs=3, args=args, batch_size=8)
    assert len(models) == len(folds)
    for j, ((train_idx, _), model) in enumerate(zip(folds, models)):
        reference = _plain_training(config, features, labels, train_idx, args, args.seed + j, 8, epochs=3)
        for (name, value), expected in zip(model.state_dict().items(), reference.state_dict().values()):
            torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5, msg=name)
    # The folds learned something different from their initialisation and from one another.
    first = [m.heads["audio"].dense.weight for m in models]
    assert not torch.allclose(first[0], first[1])


def test_cross_fit_keeps_the_held_out_evidence_of_the_lowest_nll_epoch(setup):
    config, features, labels, folds, args = setup
    args.epochs = 6
    seen = []
    result = cross_fit(config, features, labels, folds, args, batch_size=8)
    assert result.nll.shape == (6,) and np.isfinite(result.nll).all()
    assert result.epochs == int(np.argmin(result.nll)) + 1
    assert result.evidence.shape == (NUM_ITEMS, 2, NUM_LABELS)
    for j, (_, test_idx) in enumerate(folds):
        assert (result.fold[test_idx] == j).all()
    # The stored evidence is that of heads that never saw the item: retrain to E* and score each fold's test rows.
    models = fit_fold_heads(config, features, labels, folds, epochs=result.epochs, args=args, batch_size=8)
    for (_, test_idx), model in zip(folds, models):
        rows = torch.as_tensor(test_idx)
        with torch.no_grad():
            embeds = {f"{m}_embeds": features.features[m][rows] for m in features.modalities}
            alpha = model(**embeds, modality_mask=features.mask[rows]).modality_alpha
        seen.append(alpha - 1.0)
        torch.testing.assert_close(result.evidence[rows], alpha - 1.0, rtol=1e-4, atol=1e-5)
    assert sum(len(e) for e in seen) == NUM_ITEMS


def test_cross_fit_stops_once_the_held_out_nll_stops_improving(setup):
    config, features, labels, folds, args = setup
    args.epochs, args.learning_rate = 60, 0.1  # a large step: the held-out NLL soon rises
    full = cross_fit(config, features, labels, folds, args, batch_size=8)
    args.early_stopping_patience = 3
    stopped = cross_fit(config, features, labels, folds, args, batch_size=8)
    assert stopped.epochs == int(np.argmin(stopped.nll)) + 1  # the minimum of what it saw
    assert len(stopped.nll) < len(full.nll) == 60
    assert len(stopped.nll) - stopped.epochs == 3  # three epochs without improvement after E*
    np.testing.assert_allclose(stopped.nll, full.nll[: len(stopped.nll)], rtol=1e-5)


def test_pooled_features_in_chunks_equal_the_whole_pooling(setup, monkeypatch):
    # The gate's pooled features are computed in chunks of rows (the layer weighting over all rows at once copied
    # the whole (N, layers, dim) tensor); chunks of 7 rows give the same tensor as one pass.
    from modeling_ter.training import crossfit

    config, features, *_ = setup
    model = TERForEmotionRecognition(heads_config(config)).eval()
    with torch.no_grad():
        model.layer_weighting["audio"].layer_logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
        whole = model.pool_layers("audio", features.features["audio"])
    monkeypatch.setattr(crossfit, "EVALUATION_CHUNK", 7)
    chunked = crossfit.pooled_features(model, features, "audio")
    assert chunked.shape == (NUM_ITEMS, 8) and torch.allclose(chunked, whole, rtol=0, atol=1e-6)
    assert torch.equal(crossfit.pooled_features(model, features, "text"), features.features["text"][:, -1])


def test_the_domain_gate_is_fitted_on_the_items_that_define_the_domain_only(setup):
    # Noisy copies joined the Gaussians and the gate's width, so noisy speech was in domain and kept its confidence.
    from modeling_ter.training.crossfit import fit_domain_gate

    config, features, labels, folds, _ = setup
    generator = torch.Generator().manual_seed(1)
    noisy = features.features["audio"] + 2.0 * torch.randn(features.features["audio"].shape, generator=generator)
    both = CachedFeatures(
        modalities=features.modalities,
        features={
            "audio": torch.cat([features.features["audio"], noisy]),
            "text": features.features["text"].repeat(2, 1, 1),
        },
        mask=features.mask.repeat(2, 1),
    )
    both_folds = [(np.concatenate([a, a + NUM_ITEMS]), np.concatenate([b, b + NUM_ITEMS])) for a, b in folds]
    clean = torch.arange(2 * NUM_ITEMS) < NUM_ITEMS

    def gate(feats, labs, fold_list, in_domain=None):
        model = TERForEmotionRecognition(heads_config(config)).eval()
        return model, fit_domain_gate(model, feats, labs, "audio", fold_list, in_domain)

    alone, alone_gate = gate(features, labels, folds)
    model, scale = gate(both, labels.repeat(2), both_folds, clean)
    for key in ("domain_reference", "domain_width"):  # as if the copies were not there
        assert model.config.modality_config("audio")[key] == pytest.approx(alone.config.modality_config("audio")[key])
    assert torch.allclose(scale[:NUM_ITEMS], alone_gate, atol=1e-6)
    assert scale[NUM_ITEMS:].mean() < 0.5 * scale[:NUM_ITEMS].mean()  # the noisy items are out of that domain
    _, with_copies = gate(both, labels.repeat(2), both_folds)  # with the copies in, noise is in domain
    assert with_copies[NUM_ITEMS:].mean() > 2 * scale[NUM_ITEMS:].mean()
