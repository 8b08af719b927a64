"""eval/"""
