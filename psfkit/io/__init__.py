"""Reading and writing microscope images (TIFF, PNG) for the command line and scripts."""
