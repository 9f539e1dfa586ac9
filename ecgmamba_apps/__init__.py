"""The applications built on the `modeling_ecgmamba` library: the `ecgmamba-predict` command line (`predict`), the
explanations drawn on ECG paper (`explain`) and the ONNX exporter (`onnx_export`, `ecgmamba-export-onnx`).

They import the library and are never imported by it, so no checkpoint ships them.
"""
