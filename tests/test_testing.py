"""``polyloss.testing.check_implementation``: the registry's cases against a user's port.

Two ports of ``multilabel_crossentropy`` (ZLPR, kexue 7359): the widely copied one that masks with
``1e12`` (bert4keras, in TensorFlow) and a correct one (torch). The first must fail exactly where its
numerics break, the second must pass every row, and cases that a port cannot take must be skipped,
never counted as passed.
"""

from __future__ import annotations

import io

import pytest

from polyloss.testing import check_implementation

from helpers import get

HARD_LABEL_CASES = ["hard-bool", "hard-int", "hard-float", "where", "padding", "axis0", "tuple-axis", "extreme",
                    "half-range", "half-grad"]


def port_1e12(y_true, y_pred):
    """bert4keras's ``multilabel_categorical_crossentropy`` (kexue 7359), as copied into many repositories."""
    import tensorflow as tf

    y_pred = (1 - 2 * y_true) * y_pred
    y_pred_neg = y_pred - y_true * 1e12
    y_pred_pos = y_pred - (1 - y_true) * 1e12
    zeros = tf.zeros_like(y_pred[..., :1])
    y_pred_neg = tf.concat([y_pred_neg, zeros], axis=-1)
    y_pred_pos = tf.concat([y_pred_pos, zeros], axis=-1)
    return tf.reduce_logsumexp(y_pred_neg, axis=-1) + tf.reduce_logsumexp(y_pred_pos, axis=-1)


def port_1e12_ours(logits, labels):
    """The port called with polyloss's argument order, its labels in the logits' dtype."""
    import tensorflow as tf

    return port_1e12(tf.cast(labels, logits.dtype), logits)


def zlpr_torch(logits, labels, *, axis=-1, where=None):
    """A correct ZLPR in torch: hard or soft labels, ``-inf`` padding, ``where=``, any ``axis``; computes
    half precision in float32."""
    import torch

    dims = [d % logits.ndim for d in ((axis,) if isinstance(axis, int) else axis)]
    rest = [d for d in range(logits.ndim) if d not in dims]

    def classes_last(x):
        x = torch.as_tensor(x, device=logits.device).broadcast_to(logits.shape).permute(*rest, *dims)
        return x.reshape(*x.shape[:len(rest)], -1)

    s = classes_last(logits)
    s = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    t = classes_last(labels).to(s.dtype)
    keep = s > -torch.inf
    if where is not None:
        keep = keep & classes_last(where).bool()
    negative, positive = torch.where(keep, 1 - t, 0), torch.where(keep, t, 0)
    s = torch.where(keep, s, 0)
    z_neg = torch.where(negative > 0, s + torch.log(torch.where(negative > 0, negative, 1)), -torch.inf)
    z_pos = torch.where(positive > 0, torch.log(torch.where(positive > 0, positive, 1)) - s, -torch.inf)
    return log1p_sum_exp(z_neg) + log1p_sum_exp(z_pos)


def log1p_sum_exp(z):
    """``log(1 + Σ e^z)`` over the last axis, shifted by ``max(0, max z)``, with ``log1p`` when nothing is
    shifted (so that a confident row's 1e-17 keeps its digits)."""
    import torch

    m = z.amax(-1).clamp(min=0).detach()
    rest = torch.exp(z - m[..., None]).sum(-1)
    return torch.where(m > 0, m + torch.log(torch.exp(-m) + rest), torch.log1p(rest))


def _statuses(report):
    return {(r.case.split("/")[1], r.dtype): r.status for r in report.results}


def test_the_1e12_port_fails_exactly_at_float16_masks_and_large_logits():
    get("tensorflow")
    out = io.StringIO()
    report = check_implementation(port_1e12_ours, "multilabel_crossentropy", backends="tensorflow", modes="eager",
                                  cases=HARD_LABEL_CASES, file=out)
    statuses = _statuses(report)
    failing = {key for key, status in statuses.items() if status in ("FAIL", "ERROR")}
    assert failing == {
        # -inf padding (the GlobalPointer convention): (1 - 2y)·(-inf) = +inf enters the positive set
        ("padding", "float64"), ("padding", "float32"), ("padding", "float16"), ("padding", "bfloat16"),
        # large logits: a confident row (logits ±40) has loss 3.4e-17, which logsumexp([.., 0]) rounds to 0
        ("extreme", "float64"), ("extreme", "float32"),
        # float16: 1e12 is inf, and 0·inf = NaN; bfloat16: a logit of 4e37 swallows the 1e12 mask
        ("half-range", "float16"), ("half-range", "bfloat16"), ("half-grad", "float16"), ("half-grad", "bfloat16"),
    }
    for case in ("hard-bool", "hard-int", "hard-float", "axis0", "tuple-axis", "where"):
        for dtype in ("float64", "float32"):
            assert statuses[(case, dtype)] == ("PASS" if case.startswith("hard") else "SKIP"), (case, dtype)
    messages = {(r.case.split("/")[1], r.dtype): r.message for r in report.results}
    assert "worst at (0,): nan, reference 16376" in messages[("half-range", "float16")]
    assert "worst at (2,): 0, reference 3.39868e-17" in messages[("extreme", "float32")]
    assert "your function takes no where=" in messages[("where", "float32")]
    assert "your function takes no axis=" in messages[("axis0", "float64")]
    assert not report.ok and len(report.skipped) == 8  # where x 4 dtypes, axis0 and tuple-axis x 2
    table = out.getvalue()
    assert "FAIL" in table and "skipped (not run, not counted as passed):" in table and "(3 skipped)" in table


def test_a_correct_port_passes_every_row():
    get("torch")
    report = check_implementation(zlpr_torch, "multilabel_crossentropy", backends="torch", file=None)
    assert report.ok, report.table()
    assert not report.skipped and len(report.results) == 32  # 13 cases: 10 at float64/32, 6 at float16/bfloat16
    assert all(r.grad_error is not None for r in report.results if r.case != "multilabel_crossentropy/half-range")


def test_half_precision_output_is_judged_at_its_dtype():
    """A port returning float16 for float16 input: its values are held to float16's tolerance, and its
    dtype is not polyloss's float32 policy."""
    torch = get("torch") and pytest.importorskip("torch")
    from polyloss.testing import RTOL

    def in_input_dtype(logits, labels, **options):
        return zlpr_torch(logits, labels, **options).to(logits.dtype)

    report = check_implementation(in_input_dtype, "multilabel_crossentropy", backends="torch",
                                  dtypes=["float16", "bfloat16"], file=None)
    assert report.ok, report.table()
    assert {r.value_tol for r in report.results} == {RTOL["float16"], RTOL["bfloat16"]}
    assert torch.float16 is not None


def test_skipped_cases_are_never_a_pass():
    get("torch")
    report = check_implementation(lambda logits, labels: zlpr_torch(logits, labels), "multilabel_crossentropy",
                                  backends="torch", cases="where", file=None)
    assert report.results and all(r.status == "SKIP" for r in report.results)
    assert not report.ok and report.passed == []
    assert "SKIP" in report.table() and "0 PASS, 0 FAIL, 4 SKIP" in report.table()


def test_an_unknown_function_name_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'multilabel_crossentropy'"):
        check_implementation(zlpr_torch, "multilabel_crossentropyy", backends="torch", file=None)
