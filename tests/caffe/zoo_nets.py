"""What the zoo tests need to know about each zoo net, checked in so that changes show.

``LOAD_ARGS``: how to load the nets that are not deploy nets (train/val nets
whose data layers only know their shape at training time, nets that need a
stage). Real Caffe gets keraffe's deploy version of these nets (data layers
replaced by Input, training-only layers dropped), written in brocolli's
dialect, since brocolli cannot open their data sources.

``EXCLUDED``: the nets that cannot be compared with real Caffe, with the
reason. ``test_zoo_exclusions_are_current`` recomputes this table from the
layer types of each net, brocolli's registered types and keraffe's shape
rules, and fails when it changes: a net that becomes comparable (or stops
being) must be noticed, not skipped silently.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO.parent / "shared" / "zoo"

LOAD_ARGS: dict[str, dict] = {
    "bayesian_segnet/bayesian_segnet_inference.prototxt": {"input_shapes": (1, 3, 360, 480)},
    "bvlc_hdf5_classification/nonlinear_train_val.prototxt": {"input_shapes": (10, 4)},
    "bvlc_lenet/lenet_train_test.prototxt": {"input_shapes": (64, 1, 28, 28)},
    "bvlc_mnist_autoencoder/mnist_autoencoder.prototxt": {
        "input_shapes": (100, 1, 28, 28), "stages": ("test-on-test",)},
    "cifar10_quick_trained/prediction_example.prototxt": {"input_shapes": (3, 3, 32, 32)},
    "fcn_alexnet_voc/val.prototxt": {"input_shapes": (1, 3, 500, 500)},
    "segnet_basic_camvid/segnet_basic_inference.prototxt": {"input_shapes": (1, 3, 360, 480)},
    "srresnet_srgan/srres_sb_deploy.prototxt": {"input_shapes": (1, 3, 96, 96)},
}

#: Fields of the forks' schemas that brocolli-caffe's caffe.proto does not have:
#: (layer parameter message, field) -> what it is.
FIELDS_BROCOLLI_CANNOT_PARSE = {
    ("convolution_param", "pad_l"): "Synopsys asymmetric padding",
    ("convolution_param", "pad_r"): "Synopsys asymmetric padding",
    ("convolution_param", "pad_t"): "Synopsys asymmetric padding",
    ("convolution_param", "pad_b"): "Synopsys asymmetric padding",
    ("pooling_param", "pad_l"): "Synopsys asymmetric padding",
    ("pooling_param", "pad_r"): "Synopsys asymmetric padding",
    ("pooling_param", "pad_t"): "Synopsys asymmetric padding",
    ("pooling_param", "pad_b"): "Synopsys asymmetric padding",
    ("reshape_param", "pixelshuffler"): "Synopsys pixel shuffle",
}

EXCLUDED: dict[str, str] = {
    "bayesian_segnet/bayesian_segnet_inference.prototxt":
        "not in brocolli: BN",
    "dan_face_alignment/DAN_convert_optimized_new.prototxt":
        "not in brocolli: ResizeNearestNeighbor; fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "darknet19/darknet19_deploy.prototxt":
        "not in brocolli: Reorg, YoloDetectionOutput",
    "deeplabv3_pascal/deeplabv3_pascal_convert_optimized.prototxt":
        "not in brocolli: BatchToSpaceND, ResizeBilinear, SpaceToBatchND; fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "enet/enet_deploy.prototxt":
        "not in brocolli: BN, Python",
    "enet/enet_deploy_final.prototxt":
        "not in brocolli: BN",
    "facenet_inception_resnet_v1/face_net.prototxt":
        "fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "fast_rcnn_vgg_cnn_m_1024/test.prototxt":
        "not in brocolli: ROIPooling",
    "faster_rcnn_mobilenet/deploy_faster_voc_mobilenet-dw.prototxt":
        "not in brocolli: ConvolutionDepthwise, Python, ROIPooling",
    "faster_rcnn_vgg16/test.prototxt":
        "not in brocolli: Python, ROIPooling",
    "faster_rcnn_zf/test.prototxt":
        "not in brocolli: Python, ROIPooling",
    "icnet_cityscapes/icnet_cityscapes.prototxt":
        "not in brocolli: Interp",
    "mobilenet_v1_025_tfconvert/mobilenet_v1_0.25_128_convert.prototxt":
        "not in brocolli: Squeeze; fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "mobilenet_v3_small/v3-small_224_0.75_float_convert_optimized.prototxt":
        "not in brocolli: Mul; fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "mobilenet_yolov2/mobilenet_yolo_deploy.prototxt":
        "not in brocolli: DepthwiseConvolution, YoloDetectionOutput",
    "mobilenet_yolov3_lite_tusimple/mobilenet_yolov3_lite_deploy.prototxt":
        "not in brocolli: DepthwiseConvolution",
    "mobilenetv2_ssdlite/deploy.prototxt":
        "not in brocolli: DepthwiseConvolution",
    "pspnet101_voc/pspnet101_VOC2012_473.prototxt":
        "not in brocolli: BN, Interp",
    "pspnet50_ade20k/pspnet50_ADE20K_473.prototxt":
        "not in brocolli: BN, Interp",
    "pspnet_resnet101v2/deploy_psp_resnet101-v2-merge.prototxt":
        "not in brocolli: Interp",
    "pvanet/pvanet_v1.prototxt":
        "not in brocolli: Python, ROIPooling",
    "retinanet_r101_fpn/detectron2_retinanet_R_101_FPN_3_convert_optimized.prototxt":
        "not in brocolli: ResizeNearestNeighbor; fields brocolli cannot parse: pad_b, pad_l, pad_r, pad_t",
    "rfcn_resnet18/deploy_rfcn_voc_resnet18-priv-merge.prototxt":
        "not in brocolli: Python",
    "se_resnet50/SE-ResNet-50.prototxt":
        "not in brocolli: Axpy",
    "se_resnext50/SE-ResNeXt-50.prototxt":
        "not in brocolli: Axpy",
    "segnet_basic_camvid/segnet_basic_camvid.prototxt":
        "not in brocolli: BN",
    "segnet_basic_camvid/segnet_basic_inference.prototxt":
        "not in brocolli: BN",
    "segnet_driving/segnet_model_driving_webdemo.prototxt":
        "not in brocolli: BN",
    "shufflenet_v1_g3/shufflenet_1x_g3_deploy.prototxt":
        "not in brocolli: ConvolutionDepthwise, ShuffleChannel",
    "shufflenet_v2_1x/shufflenet_v2_1x_deploy.prototxt":
        "not in brocolli: ConvolutionDepthwise, ShuffleChannel",
    "srresnet_srgan/srres_sb_deploy.prototxt":
        "fields brocolli cannot parse: pixelshuffler",
    "yolo_v2_voc/yolo_voc.prototxt":
        "not in brocolli: Python",
    "yolov3_darknet/yolov3-tiny.prototxt":
        "not in brocolli: Yolov3DetectionOutput",
    "yolov3_darknet/yolov3.prototxt":
        "not in brocolli: Yolov3DetectionOutput",
}
