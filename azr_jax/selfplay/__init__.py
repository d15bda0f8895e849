"""The model-free core of AZR self-play: tasks, prompts, response parsing, buffers, rewards, TRR++.

Modules: ``tasks`` (task types, records, seed files), ``prompts`` (the six task prompts,
templates, token budget), ``parsing`` (reading responses), ``buffers`` (task buffers and
sampling), ``rewards`` (both roles' rewards), ``advantages`` (TRR++ whitening).
"""
