"""Training ECG classifiers with the Hugging Face Trainer: what `train_hf.py` runs besides parsing its arguments.

- `data`: where the datasets live on disk, PhysioNet downloads, the splits;
- `windows`: random training crops and evaluation windows (the feature extractor's layout);
- `evaluation`: record-level metrics through the library's one inference function;
- `models`: the model types `train_hf.py --model_type` builds;
- `trainer`: the Trainer subclass and the files that make every checkpoint loadable;
- `hub`: checks before publishing; `reporting`: training curves, the model card, the printed summary.

Nothing here is needed to *use* a trained model: a checkpoint loads with `trust_remote_code=True` alone.
"""
