"""The networks: image and audio encoders and decoders, the VQ-VAE that joins them to the quantizer,
and the discriminators of adversarial training."""
