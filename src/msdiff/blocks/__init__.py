"""msdiff.blocks"""
