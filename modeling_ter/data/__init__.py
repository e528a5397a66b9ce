"""Corpora: manifests, speaker-disjoint splits, corpus layouts, the frozen-feature cache and augmentation."""
