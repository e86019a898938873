"""Device layer: BrainFlow bridge, ring buffer, device keys, signed hash-chained session files.

Never imports mindprint.signal; converts BrainFlow microvolts to volts exactly once.
"""
