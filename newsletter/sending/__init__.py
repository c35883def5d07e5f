"""Sending: the engine (plan, claim, personalise, send, record), its pacing, scheduled sends."""
