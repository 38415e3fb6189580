"""What the identification network was trained on (torch-free, for input checks in NumPy code)."""

CUTOFF_RANGE = (0.125, 0.25)  # fc range of the training data (cycles/pixel)
FC_RANGE = (0.1, 0.27)  # range of the network's fc head (training draws fc in CUTOFF_RANGE)
