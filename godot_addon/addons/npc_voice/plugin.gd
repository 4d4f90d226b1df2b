@tool
extends EditorPlugin
## Editor side of the NPC Voice addon: adds the [code]NpcVoice[/code] autoload when the plugin
## is enabled (removes it when disabled) and registers the [code]npc_voice/*[/code] project
## settings.

#region Constants
const Settings := preload("npc_voice_settings.gd")
## Name of the autoload, and so of the global the game calls ([code]NpcVoice.say(...)[/code]).
const AUTOLOAD_NAME: String = "NpcVoice"
## The autoload's script, next to this file.
const AUTOLOAD_SCRIPT: String = "npc_voice_client.gd"
#endregion


#region Engine Callbacks
func _enter_tree() -> void:
	Settings.register()  # also when the project was copied with the plugin already enabled


func _enable_plugin() -> void:
	var folder: String = (get_script() as Script).resource_path.get_base_dir()
	add_autoload_singleton(AUTOLOAD_NAME, folder.path_join(AUTOLOAD_SCRIPT))
	Settings.register()
	ProjectSettings.save()


func _disable_plugin() -> void:
	remove_autoload_singleton(AUTOLOAD_NAME)
#endregion
