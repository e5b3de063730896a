"""msdiff.recipes"""
