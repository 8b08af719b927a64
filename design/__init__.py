"""design/"""
