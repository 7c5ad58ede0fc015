"""Training: the shared loop and checkpoints (`loop`), the recipes, the image and audio VQ-VAE
trainers and the prior's."""
