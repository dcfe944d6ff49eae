"""keraffe.caffe"""
