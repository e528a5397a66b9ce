"""The feature cache's encoder key: what changes the features changes the key, a backbone's name does not."""

import torch
from tiny_models import tiny_bert_config

from modeling_ter import TERConfig, TERForEmotionRecognition
from modeling_ter.data.feature_cache import encoder_key

TINY_BERT = tiny_bert_config().to_dict()


def _text_model(**backbone_overrides) -> TERForEmotionRecognition:
    torch.manual_seed(0)
    config = TERConfig(modality_configs={"text": {"backbone": {**TINY_BERT, **backbone_overrides}}}, head_hidden_size=4)
    return TERForEmotionRecognition(config)


def test_encoder_key_ignores_the_backbone_name_only():
    settings = {"tokenizer": "same"}
    base = encoder_key(_text_model(_name_or_path="/home/me/bert"), "text", settings)
    assert encoder_key(_text_model(_name_or_path="org/bert"), "text", settings) == base
    assert encoder_key(_text_model(_name_or_path="/home/me/bert", hidden_act="relu"), "text", settings) != base
    assert encoder_key(_text_model(_name_or_path="/home/me/bert"), "text", {"tokenizer": "other"}) != base
