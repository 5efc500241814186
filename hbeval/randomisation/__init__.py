"""randomisation"""
