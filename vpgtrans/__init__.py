"""vpgtrans: transfer a BLIP-2 visual prompt generator (VPG) to a new LLM."""

__version__ = "0.1.0"
