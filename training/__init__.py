"""limner-mini training: synthetic scenes, the detector, adherence checks, the training script."""
