extends RefCounted
## Converts what [AudioEffectCapture] delivers (stereo float frames at the mix rate, 44100 or
## 48000 Hz) to what the daemon's speech recognition wants (mono s16le at 16 kHz), call after
## call: its state carries over, so cutting the input anywhere gives the same output.
##
## Method, box-filter decimation: each output sample is the mean of the input over its own
## 1/16000 s interval, mono being (left + right) / 2; an input frame that straddles the edge
## of two intervals counts for both in proportion. At 48 kHz that is exactly the mean of 3
## frames; at 44.1 kHz of 2.75625 frames. The box is a weak low-pass that tames what would
## otherwise alias into the 0-8 kHz band, which is enough for speech recognition, and costs one
## short loop iteration per input frame. Samples are scaled by 32767, rounded half away from
## zero and clipped to the s16 range. [code]test/unit/mic_checks.gd[/code] checks it against
## a reference computed another way.

#region Public Variables
## Rate of the input frames, in Hz ([method AudioServer.get_mix_rate]).
var input_rate_hz: int = 48000
## Rate of the output samples, in Hz.
var output_rate_hz: int = 16000
#endregion

#region Private Variables
var _step: float = 3.0
var _sum: float = 0.0
var _filled: float = 0.0
#endregion


#region Engine Callbacks
func _init(input_rate: int, output_rate: int) -> void:
	input_rate_hz = input_rate
	output_rate_hz = output_rate
	_step = float(input_rate) / float(output_rate)  # input frames per output sample


#endregion


#region Public Functions
## Converts [param frames] (stereo, [-1, 1]); returns s16le mono PCM, 2 bytes per sample. The
## input that does not complete an output sample yet is kept for the next call.
func process(frames: PackedVector2Array) -> PackedByteArray:
	var pcm := PackedByteArray()
	pcm.resize((int((frames.size() + _filled) / _step) + 2) * 2)
	var count: int = 0
	for frame: Vector2 in frames:
		var sample: float = (frame.x + frame.y) * 0.5
		var left: float = 1.0  # the part of this input frame not given to an output sample yet
		while _filled + left >= _step:
			var part: float = _step - _filled
			pcm.encode_s16(count * 2, to_s16(_sum + sample * part, _step))
			count += 1
			left -= part
			_sum = 0.0
			_filled = 0.0
		_sum += sample * left
		_filled += left
	pcm.resize(count * 2)
	return pcm


## Forgets the partial output sample (a new stream starts).
func reset() -> void:
	_sum = 0.0
	_filled = 0.0


## The s16 value of the mean [param total] / [param weight] of float samples in [-1, 1].
static func to_s16(total: float, weight: float) -> int:
	return clampi(roundi(total / weight * 32767.0), -32768, 32767)
#endregion
