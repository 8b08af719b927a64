"""pretrain/"""
