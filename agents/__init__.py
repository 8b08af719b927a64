"""agents/"""
