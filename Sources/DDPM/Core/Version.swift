// The engine's version, read from include/ddpm_version.h (the one place it is written).
import DDPMVersion

public let libraryVersionMajor = Int(DDPM_VERSION_MAJOR), libraryVersionMinor = Int(DDPM_VERSION_MINOR),
           libraryVersionPatch = Int(DDPM_VERSION_PATCH)
public let libraryVersion = "\(libraryVersionMajor).\(libraryVersionMinor).\(libraryVersionPatch)"
/// MAJOR·10000 + MINOR·100 + PATCH
public let libraryVersionNumber = libraryVersionMajor * 10000 + libraryVersionMinor * 100 + libraryVersionPatch
