"""msdiff.io"""
