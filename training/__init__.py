"""moodcam off-device training: FER-2013 -> int8 TFLite model, report and model card."""
