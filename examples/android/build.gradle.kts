// app/build.gradle.kts (excerpt): build the model with edgekit before the app, ship the .tflite in assets.
//
// Layout: <repo>/app/build.gradle.kts (this file) and <repo>/ml/edgekit.toml (see ../ml/).
// `edgekit` must be on the PATH of the Gradle daemon (pip install 'edgekit[all]' in the
// environment that runs Gradle; or replace "edgekit" below with the full path to it).
// edgekit exits 1 when a budget or a verification check fails, which fails the Gradle build.

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.example.digits"
    compileSdk = 35
    defaultConfig {
        applicationId = "com.example.digits"
        minSdk = 24
    }
    // A .tflite is memory-mapped from the APK: it must be stored uncompressed.
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    implementation("com.google.ai.edge.litert:litert:1.4.0")
}

val mlDir = file("../ml")
val edgekitTarget = "cpu" // the [targets.cpu] table of ml/edgekit.toml

// Runs `edgekit build`, which itself does nothing when nothing changed; declaring inputs and
// outputs also lets Gradle skip the task (and show UP-TO-DATE) without starting Python.
val edgekitBuild by tasks.registering(Exec::class) {
    group = "ml"
    description = "Convert, benchmark and gate the model with edgekit (ml/edgekit.toml)."
    workingDir = projectDir
    commandLine("edgekit", "build", "-c", "../ml/edgekit.toml", "-q")
    inputs.file("../ml/edgekit.toml")
    inputs.file("../ml/model.keras")
    inputs.file("../ml/labels.txt")
    inputs.dir("../ml/data")
    outputs.dir("../ml/dist")
}

// Copies dist/<target>/*.tflite and the manifest (tensor names, int8 scale/zero point,
// preprocessing, labels) into the app's assets.
val copyEdgekitModels by tasks.registering(Copy::class) {
    group = "ml"
    dependsOn(edgekitBuild)
    from("../ml/dist/$edgekitTarget") { include("*.tflite") }
    from("../ml/dist") { include("manifest.json") }
    into("src/main/assets")
}

tasks.named("preBuild") {
    dependsOn(copyEdgekitModels)
}
