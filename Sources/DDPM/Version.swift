/// The engine's version; keep in sync with DDPM_VERSION_* in include/ddpm.h.
public let libraryVersionMajor = 0, libraryVersionMinor = 1, libraryVersionPatch = 0
public let libraryVersion = "\(libraryVersionMajor).\(libraryVersionMinor).\(libraryVersionPatch)"
/// MAJOR·10000 + MINOR·100 + PATCH
public let libraryVersionNumber = libraryVersionMajor * 10000 + libraryVersionMinor * 100 + libraryVersionPatch
