"""DSP on the edge and on the platform; never imports mindprint.device."""
