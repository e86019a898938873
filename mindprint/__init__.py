"""mindprint: collect human data from EEG wearables and prove it is real."""

__version__ = "0.1.0"
