"""The learner population: stacked LoRA adapters on one frozen base, trained in one pass,
probed exactly, exported to and imported from PEFT; and the embedded tiny base model.

A leaf package: it imports neither `curricula` nor `fitness`.
"""
