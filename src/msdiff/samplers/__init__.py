"""msdiff.samplers"""
