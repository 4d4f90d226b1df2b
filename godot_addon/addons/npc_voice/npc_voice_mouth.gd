class_name NpcVoiceMouth
extends Node
## Moves an NPC's mouth with its voice: follows a voice player's lip-sync signals and eases each
## mouth shape in over [member smoothing_s].
##
## Set [member voice_player] (or make this node a child of the [NpcVoicePlayer],
## [NpcVoicePlayer2D] or [NpcVoicePlayer3D]) and [member target]:
## [br]- a [Sprite2D] or [AnimatedSprite2D]: shows one frame per viseme ([member frames]; by
## default frame i for the i-th of "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR",
## "aa", "E", "ih", "oh", "ou"), the strongest shape at the moment;
## [br]- a [MeshInstance3D]: sets one blend shape per viseme to its weight
## ([member blend_shapes]; by default "viseme_sil", "viseme_PP"... "viseme_I", "viseme_O",
## "viseme_U", the Oculus-style names of many avatar rigs);
## [br]- nothing: draw the mouth yourself from [method get_open_amount],
## [method get_roundness], [method get_viseme] or [method get_weight].
## [br]Voices without visemes (hibari, XTTS) send how open the mouth is per audio block: it
## drives [member energy_viseme] (an open mouth) against "sil" (closed). The mouth closes when
## the turn ends, is cut or interrupted. Runs after the voice players ([member
## Node.process_priority] 1), so a shape shows in the frame its sound was reached.
## [codeblock]
## var mouth := NpcVoiceMouth.new()
## mouth.voice_player = $Blacksmith/Voice   # an NpcVoicePlayer2D
## mouth.target = $Blacksmith/Mouth         # a Sprite2D with 15 frames (hframes = 15)
## add_child(mouth)
## [/codeblock]

#region Constants
const TimingTrack := preload("timing_track.gd")
## How far each viseme opens the jaw (0 closed .. 1 wide), for [method get_open_amount].
const OPENNESS: Dictionary = {
	"sil": 0.0,
	"PP": 0.0,
	"FF": 0.15,
	"TH": 0.25,
	"DD": 0.3,
	"kk": 0.35,
	"CH": 0.3,
	"SS": 0.15,
	"nn": 0.25,
	"RR": 0.3,
	"aa": 1.0,
	"E": 0.6,
	"ih": 0.45,
	"oh": 0.7,
	"ou": 0.35,
}
## How rounded (narrow, lips forward) each viseme makes the mouth (0 .. 1), for
## [method get_roundness].
const ROUNDNESS: Dictionary = {
	"sil": 0.0,
	"PP": 0.2,
	"FF": 0.0,
	"TH": 0.0,
	"DD": 0.0,
	"kk": 0.0,
	"CH": 0.6,
	"SS": 0.0,
	"nn": 0.0,
	"RR": 0.5,
	"aa": 0.1,
	"E": 0.0,
	"ih": 0.0,
	"oh": 0.7,
	"ou": 1.0,
}
## Blend shape suffixes of [member blend_shapes]' default names, where they differ from the
## viseme's own name.
const BLEND_SHAPE_SUFFIXES: Dictionary = {"ih": "I", "oh": "O", "ou": "U"}
#endregion

#region Exported Properties
## The voice player whose voice moves this mouth; unset: the parent, when it is one.
@export var voice_player: Node = null:
	set(value):
		_disconnect_player()
		voice_player = value
		_connect_player()
## What to move: a [Sprite2D] or [AnimatedSprite2D] (frames) or a [MeshInstance3D] (blend
## shapes); unset: nothing (read the getters).
@export var target: Node = null
## Viseme name to frame index, for a [Sprite2D] or [AnimatedSprite2D] target; empty: frame i for
## the i-th viseme of the usual order. A viseme missing here shows the frame of "sil".
@export var frames: Dictionary = {}
## Viseme name to blend shape name, for a [MeshInstance3D] target; empty: "viseme_" + the
## viseme ("viseme_I", "viseme_O", "viseme_U" for "ih", "oh", "ou"). Missing shapes are skipped.
@export var blend_shapes: Dictionary = {}
## Time constant of the easing from one shape to the next, in seconds (0: jump at once).
@export_range(0.0, 0.5, 0.005, "suffix:s") var smoothing_s: float = 0.05
## The shape an energy-driven voice opens the mouth to ([signal NpcVoicePlayer.mouth_open_changed]).
@export var energy_viseme: String = "aa"
#endregion

#region Private Variables
var _weights: Dictionary = {"sil": 1.0}
var _targets: Dictionary = {"sil": 1.0}
var _connected_player: Node = null
var _blend_mesh: Mesh = null
var _blend_indices: Dictionary = {}
var _blend_names_hash: int = 0
#endregion


#region Engine Callbacks
func _init() -> void:
	process_priority = 1  # after the voice players, which fire the events


func _ready() -> void:
	if voice_player == null and get_parent() != null:
		if get_parent().has_signal(&"viseme_changed"):
			voice_player = get_parent()


func _process(delta: float) -> void:
	advance(delta)


#endregion


#region Public Functions
## Eases toward [param viseme] at [param weight] (0..1), as a [code]viseme_changed[/code] does.
func set_viseme(viseme: String, weight: float = 1.0) -> void:
	var amount: float = clampf(weight, 0.0, 1.0)
	_targets = {viseme: amount}
	if viseme != "sil":
		_targets["sil"] = 1.0 - amount


## Eases toward a mouth open [param open] (0..1), as a [code]mouth_open_changed[/code] does.
func set_open(open: float) -> void:
	var amount: float = clampf(open, 0.0, 1.0)
	_targets = {energy_viseme: amount, "sil": 1.0 - amount}


## Eases toward a closed mouth ("sil").
func close() -> void:
	_targets = {"sil": 1.0}


## Moves every shape [param delta] seconds further toward its target and updates
## [member target]; called every frame.
func advance(delta: float) -> void:
	var step: float = 1.0 if smoothing_s <= 0.0 else 1.0 - exp(-maxf(delta, 0.0) / smoothing_s)
	for viseme: String in _targets:
		if not _weights.has(viseme):
			_weights[viseme] = 0.0
	for viseme: String in _weights.keys():
		var weight: float = _weights[viseme]
		weight += (float(_targets.get(viseme, 0.0)) - weight) * step
		if weight < 0.001 and not _targets.has(viseme):
			_weights.erase(viseme)
		else:
			_weights[viseme] = weight
	_apply()


## How far [param viseme] shows now (0..1).
func get_weight(viseme: String) -> float:
	return _weights.get(viseme, 0.0)


## The viseme that shows most now ("sil" when the mouth is at rest).
func get_viseme() -> String:
	var best: String = "sil"
	for viseme: String in _weights:
		if _weights[viseme] > _weights.get(best, 0.0):
			best = viseme
	return best


## How open the mouth is now, 0 (closed) .. 1 (wide): the shapes' [constant OPENNESS], weighted.
func get_open_amount() -> float:
	var amount: float = 0.0
	for viseme: String in _weights:
		var openness: float = OPENNESS.get(viseme, 0.5)
		amount += _weights[viseme] * openness
	return clampf(amount, 0.0, 1.0)


## How rounded the mouth is now, 0 (spread) .. 1 (narrow, lips forward): [constant ROUNDNESS],
## weighted.
func get_roundness() -> float:
	var amount: float = 0.0
	for viseme: String in _weights:
		var roundness: float = ROUNDNESS.get(viseme, 0.0)
		amount += _weights[viseme] * roundness
	return clampf(amount, 0.0, 1.0)


#endregion


#region Private Functions
func _connect_player() -> void:
	if voice_player == null or not voice_player.has_signal(&"viseme_changed"):
		return
	voice_player.connect(&"viseme_changed", _on_viseme_changed)
	voice_player.connect(&"mouth_open_changed", _on_mouth_open_changed)
	voice_player.connect(&"lip_sync_ended", _on_lip_sync_ended)
	_connected_player = voice_player


func _disconnect_player() -> void:
	if _connected_player == null or not is_instance_valid(_connected_player):
		_connected_player = null
		return
	_connected_player.disconnect(&"viseme_changed", _on_viseme_changed)
	_connected_player.disconnect(&"mouth_open_changed", _on_mouth_open_changed)
	_connected_player.disconnect(&"lip_sync_ended", _on_lip_sync_ended)
	_connected_player = null


func _apply() -> void:
	if target is Sprite2D or target is AnimatedSprite2D:
		var viseme: String = get_viseme()
		var frame: int = maxi(TimingTrack.VISEMES.find(viseme), 0)
		if not frames.is_empty():
			frame = int(frames.get(viseme, frames.get("sil", 0)))
		if target.get(&"frame") != frame:
			target.set(&"frame", frame)
	elif target is MeshInstance3D:
		_apply_blend_shapes(target as MeshInstance3D)


func _apply_blend_shapes(mesh_instance: MeshInstance3D) -> void:
	if mesh_instance.mesh != _blend_mesh or blend_shapes.hash() != _blend_names_hash:
		_blend_mesh = mesh_instance.mesh
		_blend_names_hash = blend_shapes.hash()
		_blend_indices.clear()
		for viseme: String in TimingTrack.VISEMES:
			var suffix: String = BLEND_SHAPE_SUFFIXES.get(viseme, viseme)
			var shape: String = blend_shapes.get(viseme, "viseme_" + suffix)
			var index: int = mesh_instance.find_blend_shape_by_name(shape)
			if index >= 0:
				_blend_indices[viseme] = index
	for viseme: String in _blend_indices:
		mesh_instance.set_blend_shape_value(_blend_indices[viseme], get_weight(viseme))


#endregion


#region Signal Handlers
func _on_viseme_changed(_turn_id: int, viseme: String, weight: float) -> void:
	set_viseme(viseme, weight)


func _on_mouth_open_changed(_turn_id: int, open: float) -> void:
	set_open(open)


func _on_lip_sync_ended(_turn_id: int) -> void:
	close()
#endregion
