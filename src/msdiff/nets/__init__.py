"""msdiff.nets"""
