"""Why did the model say that? Attributions per lead and time, drawn on standard ECG paper.

    from modeling_ecgmamba import ECGPredictor
    from ecgmamba_apps.explain import explain_record, plot_explanation
    predictor = ECGPredictor.from_pretrained("path/to/checkpoint")
    explanation = explain_record(predictor, "00139_hr.hea")         # the most probable diagnosis
    plot_explanation(explanation, "00139_MI.png")

or `ecgmamba-predict --model ... RECORD --explain out.png`.

Method: integrated gradients (Sundararajan et al. 2017) of the explained class's *logit*, from a baseline of 0 mV on
every lead, with a midpoint Riemann sum (32 steps by default). Why:

- 0 mV is a physiological "no signal" reference (the isoelectric line), so an attribution reads as "this deflection
  of this lead, compared with a flat line, raised the score";
- integrated gradients is complete (attributions add up to logit(record) - logit(flat line), reported as a check)
  and does not suffer from the saturation that makes plain gradients near zero where ReLU/SiLU gates and the
  sigmoid are flat; gradient x input is its one-step special case: cheaper (one backward pass), noisier, offered as
  `method="gradient_x_input"`;
- the logit, not the probability: the sigmoid flattens confident predictions and would erase their evidence.

What is explained: 10 s of the record (all of it if shorter) around the model window where the class is most
probable; every window overlapping that span is attributed to its own logit and overlapping windows are averaged, so
a model with 2.5 s windows still gets a full 10 s picture. Windows, record probabilities and decisions are the
predictor's (its prediction of the record, and its one window path, `ECGPredictor.iter_windows`): the picture explains
exactly what `ecgmamba-predict` says. A 24-hour record is streamed, never held in memory: only the windows
attributed and the span drawn are kept.

The picture shows the positive part (evidence *for* the class), smoothed over 80 ms and scaled to the strongest
segment of the page, as blue shading behind each lead's trace. Attributions of an untrained model are noise: judge
a picture only with a trained checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modeling_ecgmamba.ecg_records import ECGRecord, lead_columns, millivolt_factors, read_record, select_ecg_leads

METHODS = ("integrated_gradients", "gradient_x_input")

# ECG paper: 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major squares.
PAPER_SPEED_MM_PER_S = 25.0
PAPER_GAIN_MM_PER_MV = 10.0
MIN_PAPER_SECONDS = 10.0  # shorter records are drawn on a 10 s sheet (room for the header; a familiar scale)
_ROW_MM = 25.0
_LEFT_MM, _RIGHT_MM, _TOP_MM, _BOTTOM_MM = 22.0, 6.0, 26.0, 14.0
_MINOR_COLOR, _MAJOR_COLOR, _PAPER_COLOR = "#f6c4c4", "#e07a7a", "#fff7f7"
_EVIDENCE_RGB = (0.12, 0.36, 0.85)


def attribute(
    model,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    target: int | torch.Tensor = 0,
    method: str = "integrated_gradients",
    steps: int = 32,
    baseline: torch.Tensor | None = None,
    internal_batch_size: int = 16,
) -> torch.Tensor:
    """Attribution of class `target`'s logit to every input sample: a tensor shaped like `input_values`.

    Args:
        model: a classifier called as `model(input_values=..., attention_mask=...)` with `.logits`.
        input_values: `(batch, seq_len, num_leads)` model inputs (from the feature extractor).
        attention_mask: `(batch, seq_len)`, 1 for real samples; padded samples get 0 attribution.
        target: class index, or one per batch item.
        method: `"integrated_gradients"` (default) or `"gradient_x_input"`.
        steps: integration steps (midpoint rule) of integrated gradients.
        baseline: reference input (default zeros: 0 mV on every lead).
        internal_batch_size: interpolated inputs per forward/backward pass.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    inputs = input_values.detach().to(device, torch.float32)
    mask = None if attention_mask is None else attention_mask.detach().to(device)
    base = torch.zeros_like(inputs) if baseline is None else baseline.detach().to(device, torch.float32)
    batch = inputs.shape[0]
    targets = torch.as_tensor(target, device=device).long().expand(batch)
    if method == "gradient_x_input":
        alphas = torch.ones(1, device=device)
    else:
        alphas = (torch.arange(int(steps), device=device, dtype=torch.float32) + 0.5) / int(steps)

    total = torch.zeros_like(inputs)
    per_pass = max(1, int(internal_batch_size) // batch)
    try:
        with torch.enable_grad():
            for start in range(0, len(alphas), per_pass):
                alpha = alphas[start : start + per_pass]  # (k,)
                k = len(alpha)
                path = base.unsqueeze(0) + alpha.view(k, 1, 1, 1) * (inputs - base).unsqueeze(0)  # (k, B, L, C)
                path = path.reshape(k * batch, *inputs.shape[1:]).requires_grad_(True)
                path_mask = None if mask is None else mask.repeat(k, 1)
                logits = model(input_values=path, attention_mask=path_mask).logits  # (k * B, classes)
                chosen = logits.gather(1, targets.repeat(k)[:, None]).sum()
                (gradient,) = torch.autograd.grad(chosen, path)
                total += gradient.reshape(k, batch, *inputs.shape[1:]).sum(0)
    finally:
        model.train(was_training)
    attribution = (inputs - base) * total / len(alphas)
    if mask is not None:
        attribution = attribution * mask[..., None].to(attribution.dtype)
    return attribution.detach()


@dataclass
class Explanation:
    """One record's attribution for one class, with what is needed to draw it on ECG paper.

    `attribution` is `(samples, leads)` at `model_sampling_rate` over the displayed span (`window_start` to
    `window_start + duration`; real samples only): the attributions of every model window overlapping the span,
    averaged where windows overlap. `signal` is the same span of the record in mV at its own rate, leads in the
    model's order. `logit`, `baseline_logit` and `window_attribution_sum` belong to the window where the class is
    most probable (integrated gradients' completeness check).
    """

    record_name: str
    label: str
    probability: float
    threshold: float
    window_probability: float
    method: str
    steps: int
    attribution: np.ndarray
    model_sampling_rate: float
    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    window_start: float
    record_duration: float
    logit: float
    baseline_logit: float
    window_attribution_sum: float
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.attribution.shape[0] / self.model_sampling_rate

    @property
    def completeness_gap(self) -> float:
        """|sum of the best window's attributions - (logit - baseline logit)|: integrated gradients' error."""
        return abs(self.window_attribution_sum - (self.logit - self.baseline_logit))


def explain_record(
    predictor,
    record,
    label: str | None = None,
    method: str = "integrated_gradients",
    steps: int = 32,
    display_seconds: float = 10.0,
    sampling_rate: float | None = None,
    lead_names=None,
    units: str = "mV",
    prediction=None,
) -> Explanation:
    """Attribution of one record's diagnosis (`label`, default the most probable class above its threshold).

    `predictor` is an `ECGPredictor`; `record` a path or an `ECGRecord`; `prediction` the predictor's
    `RecordPrediction` of that record if there is one already (else it is predicted here: the picture explains exactly
    what the predictor says). The explained span is `display_seconds` (at least one model window) of the record
    around the window where the class is most probable: the whole record when it is that short. Every window
    overlapping the span is attributed (each to its own logit of the class) and overlapping windows are averaged.
    A long record is streamed again to pick those windows, and only the span is read for the drawing.
    """
    if isinstance(record, (str, os.PathLike)):
        record = read_record(record, sampling_rate, lead_names, units)
    if prediction is None:
        prediction = predictor.predict([record], raise_errors=True)[0]
    labels = prediction.labels
    window_probs = np.asarray(prediction.window_probabilities)  # (windows, classes)
    record_probs = np.array([prediction.probabilities[name] for name in labels])
    notes = []
    if label is None:
        index = labels.index(prediction.diagnoses[0]) if prediction.diagnoses else int(np.argmax(record_probs))
        if not prediction.diagnoses:
            notes.append(f"no class reached its threshold: explaining the most probable one, {labels[index]}")
    else:
        matches = [i for i, name in enumerate(labels) if name.lower() == str(label).lower()]
        if not matches:
            raise ValueError(f"unknown class {label!r}: the model's classes are {labels}")
        index = matches[0]
    best = int(np.argmax(window_probs[:, index]))

    # The span to show (samples at the model rate) and the windows that overlap it; the last window ends the record.
    extractor = predictor.feature_extractor
    model_rate = float(extractor.sampling_rate)
    starts = [int(round(start * model_rate)) for start, _ in prediction.window_seconds]
    lengths = [int(round(end * model_rate)) - start for start, (_, end) in zip(starts, prediction.window_seconds)]
    total = starts[-1] + lengths[-1]
    span = min(total, max(int(round(display_seconds * model_rate)), extractor.window_samples))
    first = int(np.clip(starts[best] + lengths[best] // 2 - span // 2, 0, total - span))
    chosen = [w for w, (a, n) in enumerate(zip(starts, lengths)) if a < first + span and a + n > first]
    input_values, attention_mask = _windows(predictor, record, chosen)

    attributions = (
        attribute(predictor.model, input_values, attention_mask, target=index, method=method, steps=steps)
        .cpu()
        .numpy()
    )
    summed, count = np.zeros((total, input_values.shape[2])), np.zeros((total, 1))
    for k, w in enumerate(chosen):
        summed[starts[w] : starts[w] + lengths[w]] += attributions[k, : lengths[w]]
        count[starts[w] : starts[w] + lengths[w]] += 1
    stitched = (summed / np.maximum(count, 1))[first : first + span]
    with torch.no_grad():
        device, k = predictor.device, chosen.index(best)
        values, mask = input_values[k : k + 1].to(device), attention_mask[k : k + 1].to(device)
        logit = predictor.model(input_values=values, attention_mask=mask).logits[0, index]
        zero = predictor.model(input_values=torch.zeros_like(values), attention_mask=mask).logits[0, index]

    rate = float(record.sampling_rate)
    begin = int(round(first / model_rate * rate))
    signal = _signal_in_mv(record, extractor, begin, begin + int(round(span / model_rate * rate)))
    duration = prediction.duration if prediction.duration is not None else total / model_rate
    if span < total:
        notes.append(
            f"explained {first / model_rate:.1f}-{(first + span) / model_rate:.1f} s of {duration:.1f} s "
            f"(around the window where {labels[index]} is most probable)"
        )
    return Explanation(
        record_name=record.name,
        label=labels[index],
        probability=float(record_probs[index]),
        threshold=float(prediction.thresholds[labels[index]]),
        window_probability=float(window_probs[best, index]),
        method=method,
        steps=1 if method == "gradient_x_input" else int(steps),
        attribution=stitched,
        model_sampling_rate=model_rate,
        signal=signal,
        sampling_rate=rate,
        lead_names=list(extractor.lead_names),
        window_start=first / model_rate,
        record_duration=duration,
        logit=float(logit),
        baseline_logit=float(zero),
        window_attribution_sum=float(attributions[k].sum()),
        notes=notes,
    )


def _windows(predictor, record: ECGRecord, chosen: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model inputs of the windows numbered `chosen`, streamed through the predictor's one window path (a long
    record is not held in memory; the stream stops after the last window needed)."""
    wanted, values, masks, number = set(chosen), [], [], 0
    for batch in predictor.iter_windows(record):
        for k in range(len(batch.input_values)):
            if number + k in wanted:
                values.append(batch.input_values[k])
                masks.append(batch.attention_mask[k])
        number += len(batch.input_values)
        if number > chosen[-1]:
            break
    return torch.stack(values), torch.stack(masks)


def _signal_in_mv(record: ECGRecord, extractor, start: int, stop: int) -> np.ndarray:
    """Samples `start:stop` of the record's leads in the model's order, in mV, at the record's own rate (what a
    cardiologist would see); only that span is read."""
    record = select_ecg_leads(record)
    columns = lead_columns(record.lead_names, extractor.lead_names, record.name)
    factors = millivolt_factors(record.units, len(record.lead_names), record.name)
    return record.read(start, stop)[:, columns] * factors[columns]


# ------------------------------------------------------------------------------------------------------------ drawing


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as err:  # an optional dependency (the `train` extra)
        raise ImportError(
            "Drawing explanations needs matplotlib: pip install 'ecgmamba[train]' (or pip install matplotlib)"
        ) from err
    return Figure, FigureCanvasAgg, LineCollection, Rectangle


def evidence(explanation: Explanation, smoothing_seconds: float = 0.08) -> np.ndarray:
    """Positive attribution per lead, smoothed over `smoothing_seconds` and scaled to [0, 1] over the page."""
    positive = np.clip(explanation.attribution, 0.0, None)
    width = max(1, int(round(smoothing_seconds * explanation.model_sampling_rate)))
    kernel = np.ones(width) / width
    smooth = np.stack([np.convolve(positive[:, j], kernel, mode="same") for j in range(positive.shape[1])], axis=1)
    scale = np.percentile(smooth, 99.5) if smooth.size else 0.0
    return np.clip(smooth / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(smooth)


def plot_explanation(explanation: Explanation, path, dpi: int = 150, title: str | None = None) -> Path:
    """Draw the 12 leads on ECG paper (grid 1/5 mm, 25 mm/s, 10 mm/mV) with the evidence shaded in blue; save a PNG.

    Each lead gets a strip of the explained span (the paper is at least 10 s wide), a 1 mV calibration pulse, and
    blue shading where the attribution found evidence for the class (darker = stronger, relative to the page).
    """
    Figure, FigureCanvasAgg, LineCollection, Rectangle = _import_matplotlib()
    signal, rate = explanation.signal, explanation.sampling_rate
    num_leads = signal.shape[1]
    duration = signal.shape[0] / rate
    paper_width = max(duration, MIN_PAPER_SECONDS) * PAPER_SPEED_MM_PER_S
    width = _LEFT_MM + paper_width + _RIGHT_MM
    height = _TOP_MM + num_leads * _ROW_MM + _BOTTOM_MM
    figure = Figure(figsize=(width / 25.4, height / 25.4), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, width)
    axes.set_ylim(0, height)
    axes.set_axis_off()

    # Paper: 1 mm minor and 5 mm major lines over the whole strip area (calibration pulses included).
    x0, x1 = 4.0, width - _RIGHT_MM + 1.0
    y0, y1 = _BOTTOM_MM, _BOTTOM_MM + num_leads * _ROW_MM
    axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=_PAPER_COLOR, edgecolor="none", zorder=0))
    for step, color, lw in ((1.0, _MINOR_COLOR, 0.25), (5.0, _MAJOR_COLOR, 0.55)):
        xs = np.arange(x0, x1 + 1e-6, step)
        ys = np.arange(y0, y1 + 1e-6, step)
        segments = [((x, y0), (x, y1)) for x in xs] + [((x0, y), (x1, y)) for y in ys]
        axes.add_collection(LineCollection(segments, colors=color, linewidths=lw, zorder=1))

    # Evidence shading, one image row per lead, behind the traces.
    shade = evidence(explanation)
    model_duration = shade.shape[0] / explanation.model_sampling_rate
    times = np.arange(signal.shape[0]) / rate
    for row in range(num_leads):
        centre = y1 - (row + 0.5) * _ROW_MM
        rgba = np.zeros((1, shade.shape[0], 4))
        rgba[..., :3] = _EVIDENCE_RGB
        rgba[0, :, 3] = 0.6 * shade[:, row]
        axes.imshow(
            rgba,
            extent=(
                _LEFT_MM,
                _LEFT_MM + model_duration * PAPER_SPEED_MM_PER_S,
                centre - _ROW_MM / 2,
                centre + _ROW_MM / 2,
            ),
            aspect="auto",
            interpolation="bilinear",
            zorder=2,
        )
        trace = signal[:, row]
        offset = np.median(trace) if len(trace) else 0.0
        axes.plot(
            _LEFT_MM + times * PAPER_SPEED_MM_PER_S,
            centre + (trace - offset) * PAPER_GAIN_MM_PER_MV,
            color="black",
            linewidth=0.7,
            zorder=4,
        )
        # 1 mV x 0.2 s calibration pulse, then the lead name.
        px = _LEFT_MM - 11.0
        base = centre - 5.0
        axes.plot(
            [px, px + 1.5, px + 1.5, px + 6.5, px + 6.5, px + 8.0],
            [base, base, base + 10.0, base + 10.0, base, base],
            color="black",
            linewidth=0.7,
            zorder=4,
        )
        axes.text(5.0, centre + 6.5, explanation.lead_names[row], fontsize=9, fontweight="bold", zorder=5)

    # Header and footer.
    name = Path(explanation.record_name).name
    window = ""
    if explanation.record_duration > duration + 1e-6:
        end = explanation.window_start + duration
        window = f"    {explanation.window_start:.1f}-{end:.1f} s of a {explanation.record_duration:.1f} s record"
    decision = "above" if explanation.probability >= explanation.threshold else "below"
    axes.text(
        x0,
        height - 8.0,
        title or f"{name}: evidence for {explanation.label}",
        fontsize=13,
        fontweight="bold",
        va="center",
    )
    axes.text(
        x0,
        height - 15.5,
        f"p({explanation.label}) = {explanation.probability:.3f} ({decision} threshold {explanation.threshold:.2f})"
        f"{window}    25 mm/s, 10 mm/mV",
        fontsize=9,
        va="center",
    )
    _legend(axes, width - _RIGHT_MM - 62.0, height - 17.0, explanation.label)
    method = (
        f"integrated gradients ({explanation.steps} steps, 0 mV baseline)"
        if explanation.method == "integrated_gradients"
        else "gradient x input"
    )
    axes.text(
        x0,
        _BOTTOM_MM - 6.0,
        f"Blue: where the signal raised the model's {explanation.label} score: {method} of the logit, smoothed over "
        "80 ms, scaled to the strongest segment on this page.\nModel output for research use, not a diagnosis.",
        fontsize=7.5,
        va="center",
        linespacing=1.4,
        color="#333333",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    return path


def _legend(axes, x, y, label):
    ramp = np.zeros((1, 64, 4))
    ramp[..., :3] = _EVIDENCE_RGB
    ramp[0, :, 3] = np.linspace(0.0, 0.6, 64)
    axes.imshow(ramp, extent=(x + 22.0, x + 62.0, y - 2.0, y + 2.0), aspect="auto", zorder=5)
    axes.text(x, y, f"evidence for {label}", fontsize=7.5, va="center", ha="left")
    axes.text(x + 22.0, y - 4.5, "none", fontsize=6.5, va="center", ha="left")
    axes.text(x + 62.0, y - 4.5, "strongest", fontsize=6.5, va="center", ha="right")


def explanation_summary(explanation: Explanation, top: int = 3) -> str:
    """Leads and times with the most evidence, in words (for reports and logs)."""
    shade = evidence(explanation)
    per_lead = shade.mean(0)
    order = np.argsort(-per_lead)[:top]
    parts = []
    for j in order:
        t = int(np.argmax(shade[:, j])) / explanation.model_sampling_rate + explanation.window_start
        parts.append(f"{explanation.lead_names[j]} (peak at {t:.2f} s)")
    gap = explanation.completeness_gap
    change = max(abs(explanation.logit - explanation.baseline_logit), 1e-12)
    return (
        f"{explanation.label}: most evidence in {', '.join(parts)}; completeness error {gap:.3g} "
        f"({100 * gap / change:.1f}% of the logit change from the flat baseline)"
    )


__all__ = [
    "METHODS",
    "Explanation",
    "attribute",
    "evidence",
    "explain_record",
    "explanation_summary",
    "plot_explanation",
]
