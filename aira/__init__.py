"""aira/"""
