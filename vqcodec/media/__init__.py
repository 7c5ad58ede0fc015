"""The media stage: reading and writing images and sounds (and the mel scale of sound)."""
