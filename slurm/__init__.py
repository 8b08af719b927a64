"""slurm/"""
