"""One record path: the library is what checkpoints ship, and every path from a record to a decision gives the same
answer (training's evaluation, `ECGPredictor`, the pipeline, the explanations; the builders and the CLI's reader)."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb
from test_predict import make_checkpoint, write_record

import train_hf
from dataset_scripts import load_cinc2021, load_cpsc2018, load_ptbxl
from ecgmamba_apps.explain import explain_record
from ecgmamba_apps.predict import main as predict_main
from ecgmamba_training import evaluation, windows
from modeling_ecgmamba import STANDARD_LEADS, ECGClassificationPipeline, ECGPredictor, ECGRecord, read_record
from modeling_ecgmamba.ecg_records import standard_leads_mv

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--hidden_size", "32", "--num_hidden_layers", "2", "--state_size", "8", "--ffn_size", "64",
    "--hidden_dropout", "0", "--head_dropout", "0",
]  # fmt: skip


def every_path(predictor, signals, explain_steps=2):
    """Record probabilities and decisions of the same records through the predictor, the pipeline and explain."""
    # The pipeline class itself on the loaded model (loading it from a checkpoint is tested in a fresh process).
    classifier = ECGClassificationPipeline(model=predictor.model, feature_extractor=predictor.feature_extractor)
    labels = predictor.labels
    out = {"predictor": ([], []), "pipeline": ([], []), "explain": []}
    for signal in signals:
        result = predictor.predict_signal(signal, 100, STANDARD_LEADS)
        out["predictor"][0].append([result.probabilities[label] for label in labels])
        out["predictor"][1].append([label in result.diagnoses for label in labels])
        items = {item["label"]: item for item in classifier({"signal": signal, "sampling_rate": 100})}
        out["pipeline"][0].append([items[label]["score"] for label in labels])
        out["pipeline"][1].append([items[label]["predicted"] for label in labels])
        explanation = explain_record(predictor, ECGRecord.from_array(signal, 100), steps=explain_steps)
        out["explain"].append((explanation.label, explanation.probability))
    return out


def assert_same_answers(paths, probabilities, decisions, labels):
    for name in ("predictor", "pipeline"):
        np.testing.assert_allclose(paths[name][0], probabilities, rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(paths[name][1], decisions, err_msg=name)
    for i, (label, probability) in enumerate(paths["explain"]):
        # Explain explains the most probable diagnosis (the most probable class when none is decided).
        decided = [j for j in np.argsort(-probabilities[i], kind="stable") if decisions[i, j]]
        expected = decided[0] if decided else int(np.argmax(probabilities[i]))
        assert label == labels[expected]
        assert probability == pytest.approx(probabilities[i, expected], abs=1e-5)


@pytest.fixture(scope="module")
def trained_with_max(tmp_path_factory, ptbxl_dir):
    """A short real run with max aggregation and a non-default evaluation stride."""
    folder = tmp_path_factory.mktemp("max_run")
    options = [
        "--window_seconds", "2.5", "--eval_stride_seconds", "1.5", "--window_aggregation", "max",
        "--max_steps", "30", "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
        "--max_eval_samples", "12", "--bootstrap_samples", "0", "--learning_rate", "1e-2", "--warmup_steps", "0",
    ]  # fmt: skip
    train_hf.main(
        [
            "--data_dir",
            str(ptbxl_dir),
            "--dataset_cache_dir",
            str(folder / "cache"),
            "--output_dir",
            str(folder / "out"),
        ]
        + [*TINY, "--use_cpu", "--seed", "0", "--disable_tqdm", "true", *options]
    )
    return folder


def test_training_predictor_pipeline_and_explain_agree_with_max_aggregation(trained_with_max, ptbxl_dir):
    output_dir = trained_with_max / "out"
    config = json.loads((output_dir / "config.json").read_text())
    assert config["window_aggregation"] == "max"  # what inference needs from training travels in the checkpoint
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["window_stride_seconds"] == 1.5
    run = np.load(output_dir / "test_probabilities.npz")
    test = load_ptbxl(ptbxl_dir, cache_dir=str(trained_with_max / "cache"))["test"].select(range(12))
    signals = list(test.with_format("numpy")["input_values"])

    predictor = ECGPredictor.from_pretrained(output_dir, device="cpu", trust_remote_code=False)
    assert predictor.aggregation == "max" and predictor.feature_extractor.window_stride_seconds == 1.5
    assert predictor.thresholds.tolist() == pytest.approx(config["thresholds"])
    paths = every_path(predictor, signals)
    assert_same_answers(paths, run["probabilities"], run["decisions"], predictor.labels)
    assert run["decisions"].any() and not run["decisions"].all()  # the comparison covers both outcomes
    # Mean would have given other probabilities: the aggregation really is max.
    mean = ECGPredictor(predictor.model, predictor.feature_extractor, device="cpu", aggregation="mean")
    averaged = [list(mean.predict_signal(s, 100).probabilities.values()) for s in signals[:3]]
    assert np.abs(np.array(averaged) - run["probabilities"][:3]).max() > 1e-4


def test_a_single_label_model_gets_the_same_answer_everywhere(tmp_path, ptbxl_dir):
    checkpoint = make_checkpoint(
        tmp_path / "single", ptbxl_dir, problem_type="single_label_classification", window_seconds=2.5,
        window_aggregation="max", thresholds=[0.25] * 5,
    )  # fmt: skip
    predictor = ECGPredictor.from_pretrained(checkpoint, device="cpu", trust_remote_code=False)
    records = [read_record(ptbxl_dir / "records100" / "00000" / f"{i:05d}_lr.hea") for i in (1, 8, 139, 271)]
    signals = [standard_leads_mv(record) for record in records]
    # Training's evaluation path: the builder's arrays slid into windows, the model's logits, record_predictions.
    extractor = predictor.feature_extractor
    import datasets

    dataset = datasets.Dataset.from_dict(
        {"input_values": signals, "labels": [[1.0, 0, 0, 0, 0]] * len(signals)},
        features=datasets.Features(
            {
                "input_values": datasets.Array2D((None, 12), "float32"),
                "labels": datasets.List(datasets.Value("float32"), length=5),
            }
        ),
    )
    slid, record_index = windows.sliding_windows(dataset, extractor.window_samples, extractor.window_stride_samples)
    with torch.no_grad():
        logits = predictor.model(torch.tensor(np.stack(slid.with_format("numpy")["input_values"]))).logits
    scores, _ = evaluation.record_predictions(
        logits.numpy(), np.stack(slid["labels"]), record_index, predictor.model.config
    )
    np.testing.assert_allclose(scores.window_probabilities.sum(1), 1.0, atol=1e-6)  # softmax per window
    assert (scores.probabilities.sum(1) > 1 + 1e-3).any()  # then the max over windows, not the mean
    assert (scores.decisions.sum(1) <= 1).all()  # at most one class, and only if it reaches its threshold
    assert np.ptp(scores.probabilities, axis=0).max() > 0.05  # the records get different answers
    paths = every_path(predictor, signals)
    assert_same_answers(paths, scores.probabilities, scores.decisions, predictor.labels)


def test_a_long_record_streamed_from_disk_gets_the_in_memory_answer_everywhere(tmp_path, ptbxl_dir):
    """A record read from disk a chunk at a time (predictor, pipeline, explain) and the same record in memory."""
    checkpoint = make_checkpoint(tmp_path / "checkpoint", ptbxl_dir)
    predictor = ECGPredictor.from_pretrained(checkpoint, device="cpu", batch_size=5, trust_remote_code=False)
    source = read_record(ptbxl_dir / "records500" / "00000" / "00139_hr.hea")
    signal = np.tile(source.signal, (14, 1))  # 140 s at 500 Hz: three chunks, two resampler blocks, 27 windows
    header = write_record(tmp_path, "long", signal, source.lead_names)

    in_memory = predictor.predict_signal(signal, 500, source.lead_names)
    streamed = predictor.predict([header])[0]
    assert streamed.num_windows == in_memory.num_windows == 27
    np.testing.assert_allclose(streamed.window_probabilities, in_memory.window_probabilities, rtol=0, atol=1e-6)
    assert streamed.window_seconds == in_memory.window_seconds and streamed.diagnoses == in_memory.diagnoses
    classifier = ECGClassificationPipeline(model=predictor.model, feature_extractor=predictor.feature_extractor)
    scores = {item["label"]: item["score"] for item in classifier(str(header))}
    np.testing.assert_allclose(
        [scores[label] for label in predictor.labels], list(in_memory.probabilities.values()), atol=1e-5
    )
    explanation = explain_record(predictor, header, steps=2)
    assert explanation.probability == pytest.approx(in_memory.probabilities[explanation.label], abs=1e-5)


# ---------------------------------------------------------------------------------------------------------- readers


def extractor_array(extractor, path):
    """What the CLI's path feeds the model for a record, before windowing: the reader, then the extractor."""
    record = read_record(path)
    features = extractor(
        record.signal, sampling_rate=record.sampling_rate, lead_names=record.lead_names, units=record.units,
        truncation=False, padding=False,
    )  # fmt: skip
    return features["input_values"][0]


def test_every_sample_record_reads_the_same_through_the_builder_and_the_cli(data_dir, tmp_path):
    from modeling_ecgmamba import ECGMambaFeatureExtractor

    extractor = ECGMambaFeatureExtractor()  # 100 Hz, mV, standard leads
    ptbxl = load_ptbxl(data_dir / "ptb-xl", "all", cache_dir=str(tmp_path))
    for split in ptbxl:
        for row in ptbxl[split].with_format("numpy"):
            header = (
                data_dir
                / "ptb-xl"
                / "records100"
                / f"{row['ecg_id'] // 1000 * 1000:05d}"
                / f"{row['ecg_id']:05d}_lr.hea"
            )
            np.testing.assert_array_equal(row["input_values"], extractor_array(extractor, header), err_msg=str(header))
    cpsc = load_cpsc2018(data_dir / "cpsc2018", sampling_rate=100, cache_dir=str(tmp_path))
    files = {p.stem: p for p in (data_dir / "cpsc2018").rglob("*") if p.suffix in (".hea", ".mat")}
    files.update({p.stem: p for p in (data_dir / "cpsc2018").rglob("*.hea")})  # a WFDB record: its header
    count = 0
    for split in cpsc:
        for row in cpsc[split].with_format("numpy"):
            path = files[row["record"]]
            np.testing.assert_array_equal(row["input_values"], extractor_array(extractor, path), err_msg=str(path))
            count += 1
    assert count == 20  # ten original .mat structs and ten CinC WFDB records
    cinc = load_cinc2021(data_dir / "cinc2020", sampling_rate=100, cache_dir=str(tmp_path))
    headers = {p.stem: p for p in (data_dir / "cinc2020").glob("*.hea")}
    read = [row["record"] for split in cinc for row in cinc[split]]
    assert sorted(read) == sorted(headers)  # CPSC2018-Extra, Georgia (with its header quirk) and PTB-XL's HR record
    for split in cinc:
        for row in cinc[split].with_format("numpy"):
            path = headers[row["record"]]
            np.testing.assert_array_equal(row["input_values"], extractor_array(extractor, path), err_msg=str(path))


def test_cinc2020_records_read_as_wfdb_says_and_the_georgia_quirk(data_dir, tmp_path):
    for header in sorted((data_dir / "cinc2020").glob("*.hea")):
        record = read_record(header)
        assert record.sampling_rate == 500 and record.signal.shape[1] == 12
        assert record.metadata["Dx"] and record.metadata["Sex"]
        if header.stem.startswith("E"):  # wfdb.rdsamp refuses "E00009.mat 12 500 ..." as a record line
            with pytest.raises(Exception, match="invalid syntax in record line"):
                wfdb.rdsamp(str(header.with_suffix("")))
            import scipy.io

            val = scipy.io.loadmat(header.with_suffix(".mat"))["val"].T
            np.testing.assert_allclose(record.signal, val / 4880.0, rtol=0, atol=1e-12)  # gain 4880/mV
        else:
            signal, _ = wfdb.rdsamp(str(header.with_suffix("")))
            np.testing.assert_allclose(record.signal, signal, rtol=0, atol=1e-9)
    # The CLI predicts a Georgia record (it used to refuse it as "not a WFDB header").
    checkpoint = make_checkpoint(tmp_path / "checkpoint", data_dir / "ptb-xl")
    out = tmp_path / "georgia.json"
    status = predict_main(["--model", str(checkpoint), str(data_dir / "cinc2020" / "E00009.hea"), "--json", str(out)])
    assert status == 0 and json.loads(out.read_text())["records"][0]["ok"]


# ---------------------------------------------------------------------------------------------------------- layout


def project_modules() -> dict[str, Path]:
    """Every module of the repository's packages and scripts, by dotted name."""
    modules = {"train_hf": REPO_ROOT / "train_hf.py"}
    for package in ("modeling_ecgmamba", "ecgmamba_apps", "ecgmamba_training", "dataset_scripts", "benchmarks"):
        for path in sorted((REPO_ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules a module imports (a package's `__init__` counts when it is imported)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_cycles_no_sys_path_edits_and_the_library_imports_no_app():
    modules = project_modules()
    graph = {name: imports_of(name, path, set(modules)) for name, path in modules.items()}
    # Submodules importing their own package's __init__ is how Python works; a package importing its submodules too.
    edges = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for target in edges[node]:
            assert state.get(target) != "open", f"import cycle: {' -> '.join([*trail, node, target])}"
            if target not in state:
                visit(target, [*trail, node])
        state[node] = "done"

    for name in edges:
        if name not in state:
            visit(name, [])
    for name, targets in graph.items():
        if name.startswith("modeling_ecgmamba"):
            assert all(t.startswith("modeling_ecgmamba") for t in targets), (name, targets)
    for path in [*modules.values(), *REPO_ROOT.joinpath("tests").glob("*.py")]:
        text = path.read_text()
        assert not any(f"sys.path.{verb}(" in text for verb in ("insert", "append")), path
