"""eval/lm: downstream scoring of aira models through EleutherAI's lm-evaluation-harness."""
