"""polyloss.torch: the nn.Module of every loss of the wrappers' table (against the function, on every
conformance case), torch's reduction conventions (against torch.nn.CrossEntropyLoss, the peer), the
torchmetrics classes (against polyloss.metrics, over batches and over two gloo processes), and the
first-user problems of issue 12 (torch.compile(fullgraph=True) on the first call of a fresh process,
no requires_grad warning, the ImportError without torchmetrics)."""

from __future__ import annotations

import concurrent.futures
import inspect
import warnings

import numpy as np
import pytest

import polyloss
from polyloss import _wrappers
from polyloss.conformance.registry import cases_for
from polyloss.testing import assert_close

from helpers import GLOO_WORKER_END, get, run_python

torch = pytest.importorskip("torch") if get("torch") else None
plt = pytest.importorskip("polyloss.torch")


def _split(line, args, kwargs):
    """A case's ``(args, kwargs)`` as the module's ``(constructor kwargs, forward inputs, forward kwargs)``."""
    names = list(line.signature.parameters)
    named = {**dict(zip(names, args)), **kwargs}
    tensors = {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in named.items()}
    init = {k: v for k, v in tensors.items() if k in line.hyperparameters or k in line.settings or k in line.parameters}
    for name, shape in zip(line.parameters, line.shapes):  # a head's sizes, read from its parameters' shapes
        if name in tensors:
            init.update(zip(shape, tensors[name].shape))
    inputs = [tensors[k] for k in line.inputs if k in tensors]
    batch = {k: v for k, v in tensors.items() if k in line.batch_keywords}
    return init, inputs, batch, tensors


def _float32(args, kwargs):
    cast = lambda v: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v  # noqa: E731
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


LOSS_CASES = [(line, case) for line in _wrappers.LOSSES for case in cases_for([line.function])
              if case.call is None and "float32" in case.dtypes]


def test_every_line_has_a_class_with_the_functions_hyperparameters():
    assert {line.function for line in _wrappers.LOSSES} <= set(polyloss.losses.__all__)
    for line in _wrappers.LOSSES:
        cls = getattr(plt, line.name)
        assert issubclass(cls, torch.nn.Module) and cls.line is line
        params = inspect.signature(cls).parameters
        wrapped = [] if line.wrapped is None else [line.wrapped]
        assert list(params) == [*wrapped, *line.sizes, *line.settings, *line.parameters, *line.hyperparameters,
                                *(["allowed"] if line.shapes else []), "reduction"]
        for name, default in line.hyperparameters.items():
            assert params[name].default == default or (params[name].default is default)


@pytest.mark.parametrize("line, case", LOSS_CASES, ids=[f"{line.name}-{case.label}" for line, case in LOSS_CASES])
def test_module_equals_the_function_and_reduce(line, case):
    args, kwargs = _float32(*case.inputs(np.random.default_rng(case.seed), "float32"))
    init, inputs, batch, tensors = _split(line, args, kwargs)
    expected = line.resolve()(**tensors, **case.options)
    cls = getattr(plt, line.name)
    assert_close(cls(**init, reduction="none")(*inputs, **batch), expected, err_msg=case.name)
    assert_close(cls(**init, reduction="sum")(*inputs, **batch), polyloss.reduce(expected, "sum"), err_msg=case.name)
    ignore = init.get("ignore_index")
    labels = tensors.get("labels")
    kept = None
    if ignore is not None and labels is not None and not labels.is_floating_point() and labels.shape == expected.shape:
        kept = labels != ignore
    assert_close(cls(**init)(*inputs, **batch), polyloss.reduce(expected, where=kept), err_msg=case.name)


def test_mean_with_ignore_index_is_torchs_and_all_ignored_is_zero_not_nan():
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, -100, 1, -100, 2])
    for reduction in ("mean", "sum", "none"):
        ours = plt.SoftmaxCrossEntropy(ignore_index=-100, reduction=reduction)(logits, labels)
        peer = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction=reduction)(logits, labels)
        assert_close(ours, peer, err_msg=reduction)
    ignored = torch.full((6,), -100)
    assert torch.isnan(torch.nn.CrossEntropyLoss(ignore_index=-100)(logits, ignored))  # torch's choice
    ours = plt.SoftmaxCrossEntropy(ignore_index=-100)(logits, ignored)  # ours: 0, and a zero gradient
    (grad,) = torch.autograd.grad(ours, logits)
    assert_close(ours, torch.tensor(0.0, dtype=torch.float64))
    assert_close(grad, torch.zeros_like(logits))


def test_constructor_and_forward_errors_name_the_arguments():
    with pytest.raises(ValueError, match="reduction must be one of"):
        plt.MultilabelCrossEntropy(reduction="batchmean")
    with pytest.raises(TypeError, match="unexpected argument 'gamma'; it takes axis, reduction"):
        plt.MultilabelCrossEntropy(gamma=2.0)
    with pytest.raises(TypeError, match="needs prior"):
        plt.LogitAdjustedCrossEntropy()
    with pytest.raises(TypeError, match="takes 2 inputs"):
        plt.MultilabelCrossEntropy()(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="unexpected keyword"):
        plt.MultilabelCrossEntropy()(torch.zeros(2, 3), torch.zeros(2, 3), mask=None)


def test_settings_are_buffers_and_parameters_are_learned():
    prior = np.array([0.5, 0.3, 0.2])
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    module = plt.LogitAdjustedCrossEntropy(prior, tau=0.5)
    assert "prior" in dict(module.named_buffers())
    assert_close(module(logits, labels), polyloss.reduce(polyloss.logit_adjusted_crossentropy(logits, labels, prior,
                                                                                              tau=0.5)))
    # the hook for classes with learned parameters: a CLIP loss with a learnable temperature
    clip = plt.loss_class(_wrappers.LossClass("infonce_from_embeddings", "ClipLoss", parameters=("temperature",)))
    module = clip(temperature=0.07)
    (name, parameter), = module.named_parameters()
    assert name == "temperature" and parameter.requires_grad
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    loss = module(a, b)
    assert_close(loss, polyloss.reduce(polyloss.infonce_from_embeddings(a, b, temperature=torch.tensor(0.07))))
    loss.backward()
    assert parameter.grad is not None and torch.isfinite(parameter.grad)


# --------------------------------------------------------------------------------------------
# the CRF head: a line with shaped parameters (created at zero), allowed masks and a decoder
# --------------------------------------------------------------------------------------------
def _crf_inputs(rng, b=5, t=6, k=4):
    e = torch.from_numpy(rng.normal(0.0, 2.0, (b, t, k)).astype(np.float32))
    lengths = torch.tensor([t, 0, 1, *rng.integers(1, t + 1, b - 3)])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    labels = ["O", "B-X", "I-X", "B-Y"][:k]
    allowed = tuple(torch.from_numpy(m) for m in polyloss.allowed_transitions(labels))
    return e, mask, allowed


def test_crf_module_starts_at_zero_and_is_the_functions_with_its_parameters():
    rng = np.random.default_rng(0)
    e, mask, (allowed, first, last) = _crf_inputs(rng)
    zero = plt.CRF(4)
    assert [(n, tuple(p.shape)) for n, p in zero.named_parameters()] == [("transitions", (4, 4)), ("start", (4,)),
                                                                         ("end", (4,))]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in zero.parameters())
    a, s, u = (torch.from_numpy(rng.normal(size=shape).astype(np.float32)) for shape in ((4, 4), (4,), (4,)))
    crf = plt.CRF(4, transitions=a, start=s, end=u, allowed=(allowed, first, None), reduction="none")
    assert {n for n, _ in crf.named_buffers()} == {"allowed_transitions", "allowed_start"}
    masked = dict(transitions=torch.where(allowed, a, -torch.inf), start=torch.where(first, s, -torch.inf), end=u)
    tags, _ = polyloss.crf_decode(e, **masked, mask=mask)  # feasible gold paths
    tags = torch.where(mask, tags, 0)
    expected = polyloss.crf_nll(e, tags, **masked, mask=mask)
    assert torch.isfinite(expected).all()
    assert_close(crf(e, tags, mask=mask), expected)
    crf.reduction = "sum"
    assert_close(crf(e, tags, mask=mask), polyloss.reduce(expected, "sum"))
    crf.reduction = "mean"  # over the sequences, the empty row's 0 included (pytorch-crf's "mean")
    loss = crf(e, tags, mask=mask)
    assert_close(loss, polyloss.reduce(expected, "mean"))
    loss.backward()
    assert torch.isfinite(crf.transitions.grad).all() and (crf.transitions.grad[~allowed] == 0).all()
    assert (crf.start.grad[~first] == 0).all()
    for fill in (-1, 7):
        got_tags, got_scores = crf.decode(e, mask=mask, fill=fill)
        want_tags, want_scores = polyloss.crf_decode(e, **masked, mask=mask, fill=fill)
        assert got_tags.dtype == torch.int64 and torch.equal(got_tags, want_tags) and (got_tags[~mask] == fill).all()
        assert_close(got_scores, want_scores)


def test_crf_module_against_pytorch_crf_reductions_and_decode():
    """pytorch-crf returns the log-likelihood (ours negated); its "sum" and "mean" (over the batch) are
    our reductions; its decode gives lists (ours: a padded tensor). Right padding, no empty row (it
    needs the first timestep on)."""
    torchcrf = pytest.importorskip("torchcrf")
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    e, mask, _ = _crf_inputs(rng, b=6, t=7, k=4)
    mask[:, 0] = True
    tags = torch.from_numpy(rng.integers(0, 4, (6, 7)))
    peer = torchcrf.CRF(4, batch_first=True)
    ours = {r: plt.CRF(4, transitions=peer.transitions.detach(), start=peer.start_transitions.detach(),
                       end=peer.end_transitions.detach(), reduction=r) for r in ("none", "sum", "mean")}
    for reduction, module in ours.items():
        assert_close(module(e, tags, mask=mask), -peer(e, tags, mask=mask, reduction=reduction).detach(),
                     err_msg=reduction)
    got, _ = ours["mean"].decode(e, mask=mask)
    lengths = mask.sum(1).tolist()
    assert [row[:n] for row, n in zip(got.tolist(), lengths)] == peer.decode(e, mask=mask)


def test_crf_module_errors_name_the_arguments():
    with pytest.raises(TypeError, match="CRF needs num_tags"):
        plt.CRF()
    with pytest.raises(ValueError, match="num_tags must be a positive int, got 0"):
        plt.CRF(0)
    with pytest.raises(ValueError, match=r"transitions must have shape \(3, 3\), got \(2, 2\)"):
        plt.CRF(3, transitions=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="allowed mask of start must be booleans of shape"):
        plt.CRF(3, allowed=(None, np.ones(4, bool), None))
    with pytest.raises(ValueError, match="one mask per parameter"):
        plt.CRF(3, allowed=(np.ones((3, 3), bool),))
    with pytest.raises(TypeError, match="unexpected argument 'gamma'; it takes num_tags, transitions"):
        plt.CRF(3, gamma=1.0)
    with pytest.raises(TypeError, match="takes 1 inputs"):
        plt.CRF(3).decode(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="unexpected keyword"):
        plt.CRF(3).decode(torch.zeros(1, 2, 3), where=None)
    with pytest.raises(AttributeError, match="has no decoder"):
        plt.MultilabelCrossEntropy().decode(torch.zeros(1, 2))


def test_labels_that_require_grad_raise_without_a_torch_warning():
    """Issue 12: the value check's message turned a tensor that requires grad into a float (UserWarning).
    The model's output in the labels position (swapped arguments) requires grad."""
    logits = torch.randn(4, 5, requires_grad=True)
    labels = (torch.rand(4, 5) < 0.5).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="soft labels must lie in .0, 1.*the arguments may be swapped"):
            plt.MultilabelCrossEntropy()(labels, logits)
        with pytest.raises(ValueError, match="the arguments may be swapped"):
            polyloss.multilabel_crossentropy(labels, logits)


FULLGRAPH = """
import torch
{first}
x, y = torch.randn(4, 5, requires_grad=True), torch.rand(4, 5) < 0.3
# dynamo traces the whole call (where the import failed); the "eager" backend skips code generation
compiled = torch.compile({target}, fullgraph=True, backend="eager")
value = compiled(x, y)
value.sum().backward()
expected = polyloss.multilabel_crossentropy(x.detach(), y)
torch.testing.assert_close(value.detach().reshape(-1)[0] if value.ndim == 0 else value.detach(),
                           expected.mean() if value.ndim == 0 else expected)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("first, target", [
    ("import polyloss.torch as plt, polyloss", "plt.MultilabelCrossEntropy()"),      # the module
    ("import polyloss\nimport polyloss.torch", "polyloss.multilabel_crossentropy"),  # polyloss before torch
    ("import polyloss", "polyloss.multilabel_crossentropy"),                        # torch before polyloss
], ids=["module", "function-after-polyloss.torch", "function-torch-imported-first"])
def test_fullgraph_compiles_on_the_first_call_of_a_fresh_process(first, target):
    """Issue 12: the adapter was imported on the first call, inside the trace (``__import__`` cannot be
    traced). Each case runs in a new interpreter, so the first call is the compiled one."""
    assert "ok" in run_python(code=FULLGRAPH.format(first=first, target=target), timeout=300).stdout


def test_polyloss_torch_without_torchmetrics_has_the_losses_and_a_clear_error():
    code = """
    import sys
    sys.modules["torchmetrics"] = None          # as if it were not installed
    import torch, polyloss.torch as plt
    assert float(plt.MultilabelCrossEntropy()(torch.zeros(1, 2), torch.tensor([[1, 0]]))) > 0
    try:
        plt.metrics
    except ImportError as exc:
        print(exc)
    """
    out = run_python(code=code).stdout
    assert "needs torchmetrics" in out and "polyloss[torch]" in out


# --------------------------------------------------------------------------------------------
# lines that wrap the user's function: AdversarialLoss, GradientPenalty, VATLoss
# --------------------------------------------------------------------------------------------
class _Encoder(torch.nn.Module if torch else object):
    """An embedding, a tanh mixing layer, masked mean pooling and a linear head (the docs' model)."""

    def __init__(self, vocabulary=11, dim=4, classes=3):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocabulary, dim)
        self.mix = torch.nn.Linear(dim, dim)
        self.classifier = torch.nn.Linear(dim, classes)

    def forward(self, inputs_embeds, attention_mask):
        h = torch.tanh(self.mix(inputs_embeds))
        mask = attention_mask[..., None].to(h.dtype)
        return self.classifier((h * mask).sum(1) / mask.sum(1))


def _encoder_batch(seed=0):
    torch.manual_seed(seed)
    model = _Encoder().double()
    ids = torch.randint(0, 11, (5, 6))
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[1, 4:] = mask[3, 2:] = False
    return model, ids, mask, torch.randint(0, 3, (5,))


def _wrapped_pairs(model, mask, labels, noise):
    """(module, its forward's arguments, the function call it stands for) for each wrapped line."""
    padding = mask[..., None]

    def loss_fn(e, attention_mask, labels, reduction="mean"):  # what a user hands to the constructor
        return torch.nn.functional.cross_entropy(model(e, attention_mask), labels, reduction=reduction)

    def bound(e):  # what the function gets: the same with the batch bound
        return loss_fn(e, mask, labels)

    def per_example(e):
        return loss_fn(e, mask, labels, reduction="none")

    return [
        ("fgm", plt.AdversarialLoss(loss_fn, epsilon=0.5), ((mask, labels), {}),
         lambda e: polyloss.adversarial_loss(bound, e, epsilon=0.5)),
        ("pgd-example-where", plt.AdversarialLoss(loss_fn, epsilon=0.3, scope="example", steps=3),
         ((mask,), {"labels": labels, "where": padding}),
         lambda e: polyloss.adversarial_loss(bound, e, epsilon=0.3, scope="example", steps=3, where=padding)),
        ("penalty", plt.GradientPenalty(loss_fn), ((mask, labels), {}), lambda e: polyloss.gradient_penalty(bound, e)),
        ("penalty-example-sum", plt.GradientPenalty(loss_fn, scope="example", normalized=True, reduction="sum"),
         ((mask, labels), {"reduction": "none", "where": padding}),
         lambda e: tuple(v.sum() for v in polyloss.gradient_penalty(per_example, e, scope="example", normalized=True,
                                                                   where=padding))),
        ("vat", plt.VATLoss(model, iterations=2), ((), {"attention_mask": mask, "noise": noise, "where": padding}),
         lambda e: polyloss.vat_loss(lambda z: model(z, mask), e, iterations=2, noise=noise, where=padding).mean()),
    ]


def test_wrapped_modules_equal_the_functions_and_leave_grad_buffers_alone():
    """Each module against its function on the same model: the values and the gradients of every weight;
    no ``.grad`` buffer is written before the user's backward (the modules take their inner gradients
    with torch.autograd.grad), and the user's backward then writes exactly the function's gradients."""
    model, ids, mask, labels = _encoder_batch()
    noise = torch.randn(5, 6, 4, dtype=torch.float64)
    weights = list(model.parameters())
    for name, module, (args, kwargs), function in _wrapped_pairs(model, mask, labels, noise):
        out = module(model.embeddings(ids), *args, **kwargs)
        assert all(w.grad is None for w in weights), name
        expected = function(model.embeddings(ids))
        out, expected = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
        assert len(out) == len(expected)
        for got, want in zip(out, expected):
            assert_close(got, want, rtol=1e-13, atol=1e-15, err_msg=name)
        want_grads = torch.autograd.grad(sum(expected), weights)
        sum(out).backward()
        for w, g in zip(weights, want_grads):
            assert_close(w.grad, g, rtol=1e-12, atol=1e-15, err_msg=name)
        model.zero_grad(set_to_none=True)


def test_wrapped_modules_in_a_training_step_match_the_functions_step_by_step():
    """Three AdamW steps on loss + adversarial + 0.1·penalty + VAT, with the modules and with the
    functions, from the same weights and the same torch.Generator seed: the same weights after each step."""
    def train(use_modules):
        model, ids, mask, labels = _encoder_batch(seed=1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(0)
        padding = mask[..., None]

        def loss_fn(e, attention_mask, labels):
            return polyloss.reduce(polyloss.softmax_crossentropy(model(e, attention_mask), labels))

        adversarial = plt.AdversarialLoss(loss_fn, epsilon=1.0)
        penalty = plt.GradientPenalty(loss_fn)
        vat = plt.VATLoss(model, key=generator)
        history = []
        for _ in range(3):
            embeds = model.embeddings(ids)
            if use_modules:
                loss, adv = adversarial(embeds, mask, labels, where=padding)
                _, pen = penalty(embeds, mask, labels, where=padding)
                v = vat(embeds, mask, where=padding)
            else:
                def bound(e):
                    return loss_fn(e, mask, labels)

                loss, adv = polyloss.adversarial_loss(bound, embeds, epsilon=1.0, where=padding)
                _, pen = polyloss.gradient_penalty(bound, embeds, where=padding)
                v = polyloss.vat_loss(lambda e: model(e, mask), embeds, key=generator, where=padding).mean()
            optimizer.zero_grad()
            (loss + adv + 0.1 * pen + v).backward()
            optimizer.step()
            history.append([p.detach().clone() for p in model.parameters()])
        return history

    with_modules, with_functions = train(True), train(False)
    for step, (a, b) in enumerate(zip(with_modules, with_functions)):
        for x, y in zip(a, b):
            assert_close(x, y, rtol=1e-12, atol=1e-14, err_msg=f"step {step}")
    assert not torch.equal(with_modules[0][0], with_modules[-1][0])  # it trained


def test_wrapped_module_holds_the_model_and_checks_its_arguments():
    model, ids, mask, labels = _encoder_batch()
    vat = plt.VATLoss(model, epsilon=2.0)
    assert dict(vat.named_parameters()).keys() == {f"logits_fn.{k}" for k in dict(model.named_parameters())}
    assert "logits_fn.classifier.weight" in vat.state_dict()
    assert "epsilon=2.0" in repr(vat) and "(logits_fn): _Encoder" in repr(vat)
    with pytest.raises(TypeError, match="needs loss_fn"):
        plt.AdversarialLoss(epsilon=1.0)
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        plt.AdversarialLoss(torch.zeros(3))
    with pytest.raises(TypeError, match="unexpected argument 'xi'; it takes loss_fn, epsilon"):
        plt.AdversarialLoss(model, xi=1.0)
    with pytest.raises(TypeError, match="takes 1 inputs"):
        plt.GradientPenalty(model)()
    with pytest.raises(ValueError, match="epsilon must lie in"):  # the function's own checks
        plt.AdversarialLoss(lambda e: e.sum(), epsilon=-1.0)(torch.zeros(2, 3))


def test_wrapped_fgm_module_under_torch_compile_equals_eager():
    """torch.compile traces the module (graph breaks at torch.autograd.grad; the "eager" backend skips
    code generation, as the fullgraph test above): the same losses and weight gradients. The gradient
    penalty is not compiled (docs/adversarial.md: torch.compile's backward cannot be differentiated again)."""
    model, ids, mask, labels = _encoder_batch()
    model = model.float()
    fgm = plt.AdversarialLoss(lambda e, m, y: torch.nn.functional.cross_entropy(model(e, m), y), epsilon=0.5)
    compiled = torch.compile(fgm, backend="eager")
    weights = list(model.parameters())
    results = []
    for module in (fgm, compiled):
        loss, adversarial = module(model.embeddings(ids), mask, labels)
        results.append((loss, adversarial, torch.autograd.grad(loss + adversarial, weights)))
    (l0, a0, g0), (l1, a1, g1) = results
    assert_close(l1, l0)
    assert_close(a1, a0)
    for a, b in zip(g1, g0):
        assert_close(a, b)


# --------------------------------------------------------------------------------------------
# torchmetrics
# --------------------------------------------------------------------------------------------
def _metric_data(rng):
    scores = rng.integers(-4, 5, (37, 5)).astype(np.float32) / 2  # ties and entries at 0
    labels = rng.random((37, 5)) < 0.4
    return scores, labels


METRIC_INPUTS = {
    "PrecisionRecallF1": lambda s, y: (s, y), "MultilabelF1": lambda s, y: (s, y),
    "MultilabelPrecision": lambda s, y: (s, y), "MultilabelRecall": lambda s, y: (s, y),
    "Accuracy": lambda s, y: (s, y), "BestThreshold": lambda s, y: (s, y),
    "Spearman": lambda s, y: (s[:, 0], s[:, 1] + y[:, 2]), "Pearson": lambda s, y: (s[:, 0], s[:, 1] - s[:, 3]),
    "GlobalPointerF1": lambda s, y: (s[:36, :4].reshape(36, 1, 2, 2), y[:36, :4].reshape(36, 1, 2, 2)),
    "GlobalPointerPrecisionRecallF1": lambda s, y: (s[:36, :4].reshape(36, 1, 2, 2), y[:36, :4].reshape(36, 1, 2, 2)),
}
SETTINGS = {"PrecisionRecallF1": {"average": "macro"}, "MultilabelF1": {"average": "none"}}


def _one_shot(line, a, b, settings):
    state = line.resolve()(**settings).update(a, b)
    result = state.compute()
    return result if line.index is None else result[line.index]


@pytest.mark.parametrize("line", _wrappers.METRICS, ids=lambda line: line.name)
def test_torchmetrics_class_equals_polyloss_over_batches(line):
    a, b = (torch.from_numpy(np.asarray(v)) for v in METRIC_INPUTS[line.name](*_metric_data(np.random.default_rng(1))))
    settings = SETTINGS.get(line.name, {})
    metric = getattr(plt.metrics, line.name)(**settings)
    assert metric.full_state_update is False
    for field, how in line.resolve().fields.items():
        assert metric._reductions[field].__name__ == {"sum": "dim_zero_sum", "cat": "dim_zero_cat"}[how]
    for lo, hi in ((0, 1), (1, 1), (1, 10), (10, len(a))):  # a batch of one row, an empty batch
        metric.update(a[lo:hi], b[lo:hi])
    expected = _one_shot(line, a, b, settings)
    as_tuple = lambda v: v if isinstance(v, tuple) else (v,)  # noqa: E731
    for g, e in zip(as_tuple(metric.compute()), as_tuple(expected)):
        assert torch.equal(g, e), (line.name, g, e)
    metric.reset()
    metric.update(a, b)  # the state starts again
    assert torch.equal(as_tuple(metric.compute())[0], as_tuple(expected)[0])


def test_state_fields_are_the_keys_of_the_measured_state():
    s, y = _metric_data(np.random.default_rng(2))
    for line in _wrappers.METRICS:
        state, _ = line.resolve()().measure(*METRIC_INPUTS[line.name](s, y))
        assert set(state) == set(line.resolve().fields), line.name


GLOO = r'''
import datetime, os, sys
import numpy as np, torch, torch.distributed as dist
import polyloss.torch as plt

rank, store, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
data = np.load(folder + "/inputs.npz")
a, b = torch.from_numpy(data["a"]), torch.from_numpy(data["b"])
rows = [(0, 10), (10, 23)] if rank == 0 else [(23, 37), (37, 37)]   # unequal shares, an empty batch
out = {}
for name in NAMES:
    metric = getattr(plt.metrics, name)(**SETTINGS.get(name, {}))
    for lo, hi in rows:
        metric.update(a[lo:hi], b[lo:hi])
    result = metric.compute()                          # synchronised through the states
    for i, v in enumerate(result if isinstance(result, tuple) else (result,)):
        out[f"{name}/{i}"] = v.numpy()
np.savez(folder + "/rank%d.npz" % rank, **out)
''' + GLOO_WORKER_END


@pytest.mark.slow
def test_torchmetrics_classes_over_two_gloo_processes_equal_the_one_shot_result(tmp_path):
    names = ["MultilabelF1", "PrecisionRecallF1", "Accuracy", "BestThreshold"]
    s, y = _metric_data(np.random.default_rng(3))
    np.savez(tmp_path / "inputs.npz", a=s, b=y)
    script = tmp_path / "worker.py"
    script.write_text(GLOO.replace("NAMES", repr(names)).replace("SETTINGS.get", f"{SETTINGS!r}.get"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_python, str(script), str(rank), str(tmp_path / "store"), str(tmp_path), timeout=120)
                for rank in range(2)]
        for run in runs:
            run.result()
    a, b = torch.from_numpy(s), torch.from_numpy(y)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for name in names:
            line = next(line for line in _wrappers.METRICS if line.name == name)
            expected = _one_shot(line, a, b, SETTINGS.get(name, {}))
            for i, e in enumerate(expected if isinstance(expected, tuple) else (expected,)):
                np.testing.assert_array_equal(got[f"{name}/{i}"], e.numpy(), err_msg=f"{name} on rank {rank}")
