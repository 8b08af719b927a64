"""compose/"""
