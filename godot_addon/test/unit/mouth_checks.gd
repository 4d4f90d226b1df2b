extends RefCounted
## Unit checks of [NpcVoiceMouth] ([code]npc_voice_mouth.gd[/code]), run by
## [code]run_tests.gd[/code]: a [Sprite2D] shows the frame of the strongest viseme, eased over
## [code]smoothing_s[/code] (a name map, energy values, closing); a [MeshInstance3D]'s blend
## shapes follow the visemes' weights (default Oculus-style names, or a map); a mouth that is a
## child of a voice player follows its signals until it is detached.

#region Constants
const TimingTrack := preload("res://addons/npc_voice/timing_track.gd")
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
const Mouth := preload("res://addons/npc_voice/npc_voice_mouth.gd")
#endregion

#region Private Variables
var _check: Callable
var _tree: SceneTree = null
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
## Runs the checks inside [param tree].
func run(tree: SceneTree) -> void:
	_tree = tree
	_test_mouth_frames()
	_test_mouth_blend_shapes()
	_test_mouth_follows_a_player()


#endregion


#region Private Functions
func _test_mouth_frames() -> void:
	var sprite := Sprite2D.new()
	sprite.hframes = 15
	var mouth: Mouth = Mouth.new()
	mouth.target = sprite
	_check.call(mouth.get_viseme() == "sil" and mouth.get_open_amount() == 0.0, "at rest")
	mouth.set_viseme("oh")
	mouth.advance(0.01)
	var partly: float = mouth.get_weight("oh")
	_check.call(partly > 0.1 and partly < 0.3 and sprite.frame == 0, "eased: %.2f" % partly)
	mouth.advance(1.0)
	_check.call(sprite.frame == TimingTrack.VISEMES.find("oh"), "frame of oh: %d" % sprite.frame)
	_check.call(absf(mouth.get_open_amount() - Mouth.OPENNESS["oh"]) < 0.01, "open as oh")
	_check.call(absf(mouth.get_roundness() - Mouth.ROUNDNESS["oh"]) < 0.01, "round as oh")
	mouth.frames = {"sil": 2, "aa": 5}
	mouth.set_open(0.8)
	mouth.advance(1.0)
	_check.call(sprite.frame == 5 and mouth.get_viseme() == "aa", "energy opens to aa")
	_check.call(absf(mouth.get_open_amount() - 0.8) < 0.01, "open 0.8")
	mouth.smoothing_s = 0.0
	mouth.set_viseme("PP")
	mouth.advance(0.0)
	_check.call(sprite.frame == 2, "a viseme without a frame shows sil's")
	mouth.close()
	mouth.advance(0.0)
	_check.call(mouth.get_weight("sil") == 1.0 and mouth.get_open_amount() == 0.0, "closed")
	mouth.free()
	sprite.free()


func _test_mouth_blend_shapes() -> void:
	var mesh := ArrayMesh.new()
	for shape: String in ["viseme_aa", "viseme_O", "jawOpen"]:
		mesh.add_blend_shape(shape)
	var arrays: Array = []
	arrays.resize(Mesh.ARRAY_MAX)
	arrays[Mesh.ARRAY_VERTEX] = PackedVector3Array([Vector3.ZERO, Vector3.RIGHT, Vector3.UP])
	var shape_arrays: Array = []
	shape_arrays.resize(Mesh.ARRAY_MAX)
	shape_arrays[Mesh.ARRAY_VERTEX] = PackedVector3Array([Vector3.ZERO, Vector3.RIGHT, Vector3.ONE])
	mesh.add_surface_from_arrays(
		Mesh.PRIMITIVE_TRIANGLES, arrays, [shape_arrays, shape_arrays, shape_arrays], {}, 0
	)
	var instance := MeshInstance3D.new()
	instance.mesh = mesh
	_tree.root.add_child(instance)
	var mouth: Mouth = Mouth.new()
	mouth.target = instance
	mouth.smoothing_s = 0.0
	mouth.set_viseme("oh", 0.6)
	mouth.advance(0.0)
	var o_value: float = instance.get_blend_shape_value(
		instance.find_blend_shape_by_name("viseme_O")
	)
	var aa_value: float = instance.get_blend_shape_value(
		instance.find_blend_shape_by_name("viseme_aa")
	)
	_check.call(absf(o_value - 0.6) < 0.001 and aa_value == 0.0, "oh on viseme_O: %.2f" % o_value)
	mouth.blend_shapes = {"aa": "jawOpen"}
	mouth.set_open(0.5)
	mouth.advance(0.0)
	var jaw: float = instance.get_blend_shape_value(instance.find_blend_shape_by_name("jawOpen"))
	o_value = instance.get_blend_shape_value(instance.find_blend_shape_by_name("viseme_O"))
	_check.call(absf(jaw - 0.5) < 0.001 and o_value == 0.0, "a name map: jawOpen %.2f" % jaw)
	mouth.free()
	instance.queue_free()


func _test_mouth_follows_a_player() -> void:
	var player: Node = VoicePlayer.new()
	_tree.root.add_child(player)
	var mouth: Mouth = Mouth.new()
	mouth.smoothing_s = 0.0
	player.add_child(mouth)  # a child of its player: follows it
	mouth.set_process(false)
	player.emit_signal(&"viseme_changed", 1, "E", 1.0)
	mouth.advance(0.0)
	_check.call(mouth.get_viseme() == "E", "viseme_changed moves it")
	player.emit_signal(&"mouth_open_changed", 1, 0.3)
	mouth.advance(0.0)
	_check.call(absf(mouth.get_weight("aa") - 0.3) < 0.001, "mouth_open_changed opens it")
	player.emit_signal(&"lip_sync_ended", 1)
	mouth.advance(0.0)
	_check.call(mouth.get_viseme() == "sil", "lip_sync_ended closes it")
	mouth.voice_player = null
	player.emit_signal(&"viseme_changed", 1, "E", 1.0)
	mouth.advance(0.0)
	_check.call(mouth.get_viseme() == "sil", "no player: it stays")
	player.queue_free()
#endregion
